// plan: a whole estate as one reviewed file. The plan file (YAML) names the vCenter, the defaults
// and every VM with its wave, window and overrides; `plan new` writes a first one from the
// inventory, `plan check` runs every precheck for every VM in one pass, `plan estimate` says what
// a run would move and take, `plan run` migrates it under budgets (lib/supervisor), and a run's
// summary is rendered as text and as a self-contained HTML report.

export type { PlannedVm, PlannedMode, VmQuery, CutoverWindow, PlanBudgets } from './planned-vm.js';
export type { PlanRunSummary, VmRunRecord, WaveRecord, PhaseSpan, VmOutcome } from './run-summary.js';
export { renderTextSummary } from './report-text.js';
export { renderHtmlReport } from './report-html.js';
export { PlanRunLock, runPlan, type PlanRunSettings, type PlanRunOutcome } from './plan-run.js';
export { RunRecord, type RunStatus, type VmStatus, type RecordedVm } from './run-record.js';
export { readStatus, writerAlive, statusFile, planStateDir } from './status-file.js';
export { renderStatus } from './status-text.js';
export { loadPlan, parsePlan, PLAN_VERSION, DEFAULT_WAVE, DEFAULT_BUDGETS, type Plan, type PlanVcenter, type PlanTls } from './plan-file.js';
export { PlanFileError, type PlanProblem } from './plan-yaml.js';
export { startingPlan, inferNetworks, vmFacts, type StartingPlanInput, type InferredNetworks } from './plan-new.js';
export { checkFleet, type FleetCheck, type FleetCheckContext, type VmCheck, type Finding, type CapacityLine } from './fleet-check.js';
export { runOrder, planRoom, poolRoom, type RoomLine, type PoolLine, type SharedPool, type Overflow, type CapacityDemand, type DatastoreRoom } from './plan-capacity.js';
export { renderCheck } from './check-text.js';
// `plan estimate`: a dry run (nothing changes) of the plan under its budgets.
export { estimatePlan, type PlanEstimate, type VmEstimate, type WaveEstimate, type DiskEstimate, type Figure, type Basis, type EstimateContext, type ProbeResult } from './estimate.js';
export { renderEstimateText } from './estimate-text.js';
