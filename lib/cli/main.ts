#!/usr/bin/env node
// The oneswap command. Thin: parses options, connects, calls the supervisor, prints one line per
// error and exits with a code that says what kind of failure it was.

import { Command, Option } from 'commander';
import { OneswapError, describeError, exitCodeOf } from '../errors/index.js';
import { connectVcenter, type VcenterOptions } from './connect.js';
import { list, LIST_KINDS, type ListFilters } from './list.js';
import { runImport, runWarmStage, type ImportCliOptions, type WarmStage } from './import.js';
import { runWarmStatus, type WarmStatusCliOptions } from './warm-status.js';
import { runConvert, type ConvertCliOptions } from './convert.js';
import { runMarketRefresh, type MarketRefreshCliOptions } from './market.js';
import { runPlanNew, type PlanNewCliOptions } from './plan.js';
import { runPlanCheck, runPlanEstimate, runPlanRun, runPlanStatus, type PlanCheckCliOptions, type PlanEstimateCliOptions, type PlanRunCliOptions, type PlanStatusCliOptions } from './plan-run.js';

const collect = (value: string, previous: string[]): string[] => [...previous, value];

function vcenterOptions(cmd: Command): Command {
  return cmd
    .option('--vcenter <host[:port]>', 'vCenter or ESXi host (env ONESWAP_VCENTER)')
    .option('--user <name>', 'vCenter user (env ONESWAP_VCENTER_USER)')
    .option('--password-file <file>', 'file whose first line is the vCenter password (or env ONESWAP_VCENTER_PASSWORD, or a prompt)')
    .option('--thumbprint <sha256|sha1>', "pin the vCenter certificate by its fingerprint")
    .option('--ca <file>', 'verify the vCenter certificate against this CA (PEM)')
    .option('--insecure', 'do not verify the vCenter certificate (not recommended)');
}

/** What every command that migrates a VM shares: where it goes, how it is converted, how it runs. */
function migrationOptions(cmd: Command, datastore: 'required' | 'optional' = 'required'): Command {
  const ds = ['--datastore <id>', 'OpenNebula image datastore to create the images in'] as const;
  return (datastore === 'required' ? cmd.requiredOption(...ds) : cmd.option(...ds))
    .option('--datacenter <name>', 'look the VMs up in this datacenter')
    .option('--shutdown-timeout <seconds>', 'how long to wait for the guest to shut down', '300')
    .option('--force-poweroff', 'warm cutover: power the VM off when the guest does not shut down in time')
    .option('--start', 'also create the VM, which OpenNebula then deploys and starts (same as --instantiate)')
    .option('--enable-cbt', 'warm: turn changed block tracking on when it is off')
    .option('--no-rehearse', 'warm: skip the rehearsal conversion on throw-away overlays after the first round')
    .option('--no-convert', 'skip the guest conversion (virt-v2v-in-place on the image files); the template then keeps SATA disks and the source NIC models')
    .option('--context-package <file>', 'install this OpenNebula context package (.deb/.rpm) at the guest\'s first boot')
    .option('--guest-agent', 'install qemu-guest-agent at the guest\'s first boot and give the VM its channel')
    .option('--network-map <vcenterNet=oneNet>', 'map a vCenter network to an OpenNebula network id or name (repeatable)', collect, [] as string[])
    .option('--no-keep-mac', 'let OpenNebula choose the NIC MACs instead of keeping the source MACs')
    .option('--keep-ip', "reserve the address the guest used on each NIC (its static address; else what VMware Tools reported while it ran, or its last DHCP lease) on the mapped network")
    .option('--context-network', 'CONTEXT NETWORK=YES even when the guest keeps a static configuration of its own')
    .option('--no-context-network', 'no CONTEXT NETWORK=YES, whatever the guest\'s configuration')
    .option('--name-prefix <prefix>', 'prefix for the names of the images and the template', '')
    .addOption(new Option('--transport <reader>', 'how disks are read: auto picks vddk or nfc when available, else datastore HTTP (folder) for a powered-off VM on a file datastore, else an export lease').choices(['auto', 'folder', 'lease', 'vddk', 'nfc']).default('auto'))
    .option('--vddk-libdir <dir>', "VMware's VDDK (the unpacked vmware-vix-disklib-distrib folder) for nbdkit's vddk plugin (env ONESWAP_VDDK_LIBDIR)")
    .option('--lease-rounds', 'warm: run rounds after the first even when a disk is read through an export lease (each streams the whole disk)')
    .option('--streams <n>', 'parallel range streams per disk', '4')
    .option('--parallel <n>', 'VMs migrated at once', '2')
    .addOption(new Option('--progress <mode>', 'progress display').choices(['tty', 'plain', 'json']))
    .option('--endpoint <url>', 'OpenNebula XML-RPC endpoint (default: ONE_XMLRPC, ~/.one/one_endpoint)')
    .option('--state-dir <dir>', 'where resume journals and logs live (default: ~/.local/state/oneswap)')
    .option('--log-dir <dir>', 'where run logs go (default: <state-dir>/logs)');
}

export function program(signal: AbortSignal): Command {
  const warn = (m: string): void => void process.stderr.write(`warning: ${m}\n`);
  const p = new Command('oneswap')
    .description('Move VMware vCenter/ESXi VMs into OpenNebula: one write per byte, straight into the image datastore')
    .version('0.1.0')
    .showHelpAfterError('(oneswap <command> --help shows the options)')
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .exitOverride();

  vcenterOptions(
    p
      .command('list')
      .description(`list vCenter objects: ${LIST_KINDS.join(', ')}`)
      .argument('<kind>', LIST_KINDS.join('|'))
      .option('--name <pattern>', 'only names matching (exact, or with * and ?)')
      .option('--datacenter <name>', 'only in this datacenter')
      .option('--cluster <name>', 'only in this cluster (vms, hosts)')
      .option('--power <state>', 'vms: on, off or suspended')
      .option('--json', 'JSON instead of a table'),
  ).action(async (kind: string, o: ListFilters & VcenterOptions) => {
    const client = await connectVcenter(o, warn);
    try {
      process.stdout.write(await list(client, kind, o));
    } finally {
      await client.logout().catch(() => undefined);
    }
  });

  migrationOptions(
    vcenterOptions(
      p
        .command('import')
        .description('import vCenter VMs into OpenNebula images and a VM template: cold (VM off, or --shutdown), or --warm while it runs; or the VM of an OVA or of VMDK files, into OpenNebula or a directory')
        .argument('[vm...]', 'VM names, inventory paths or UUIDs (vCenter)')
        .option('--ova <file|dir>', 'import the VM of this OVA (read in place, never unpacked) or unpacked OVF folder')
        .option('--vmdk <file...>', 'import one VM made of these VMDK files, boot disk first')
        .option('--output-dir <dir>', 'with --ova/--vmdk: write the disks, the converted guest and OpenNebula templates into this directory instead of OpenNebula')
        .option('--output-format <raw|qcow2>', 'with --output-dir: the disk files\' format, written in the same single pass (default raw)')
        .option('--compressed', 'with --output-format qcow2: compressed clusters (zlib), written in the same single pass; smaller files, more CPU; what the conversion changes is stored uncompressed')
        .option('--name <name>', 'with --ova/--vmdk: the VM name (default: the OVF\'s, or the first VMDK\'s file name)')
        .option('--cpus <n>', 'with --vmdk: virtual CPUs (default 1)')
        .option('--memory <size>', 'with --vmdk: memory, MiB or with a unit such as 4G (default 2048)')
        .option('--firmware <bios|efi>', 'with --vmdk: the firmware the guest boots with (default bios)')
        .option('--shutdown', 'cold: ask a running guest to shut down first and wait for it')
        .option('--instantiate', 'also create the VM (persistent images: OpenNebula copies nothing at deploy)')
        .option('--keep-on-failure', 'cold: keep the images of a failed import (marked ONESWAP_STATE=FAILED) to resume later')
        .option('--warm', 'copy while the VM runs (CBT rounds), then cut over: shut down, copy the last changes, convert, build')
        .option('--cutover-at <time>', 'warm: cut over at this time (HH:MM local, or an ISO date-time)')
        .option('--cutover-when-below <size>', 'warm: cut over once a round copied at most this much (e.g. 256M)')
        .option('--sync-interval <duration>', 'warm: time between the starts of two rounds (e.g. 90s, 5m, 1h; default 5m)'),
    ),
    'optional',
  ).action(async (vms: string[], o: ImportCliOptions) => {
    process.exitCode = await runImport(vms, o, signal);
  });

  const warm = p.command('warm').description('a warm migration in stages, for a change window: start, sync (repeat), cutover; or abort; status shows where it stands');
  const stages: Array<[WarmStage, string]> = [
    ['start', 'prechecks, placeholders, the first full copy while the VM runs, and a rehearsal conversion'],
    ['sync', 'copy what changed since the last round (the VM keeps running)'],
    ['cutover', 'shut the guest down, copy the last changes, convert, build the template (and VM with --start); asks a running import --warm to do it instead'],
    ['abort', "remove oneswap's snapshot, images, template and VM of the migration; the source stays as it is"],
  ];
  for (const [stage, description] of stages) {
    migrationOptions(vcenterOptions(warm.command(stage).description(description).argument('<vm...>', 'VM names, inventory paths or UUIDs'))).action(
      async (vms: string[], o: ImportCliOptions) => {
        process.exitCode = await runWarmStage(stage, vms, o, signal);
      },
    );
  }
  vcenterOptions(
    warm
      .command('status')
      .description('rounds, changeIds and bytes per disk, measured rates and the predicted downtime of a cutover now')
      .argument('<vm>', 'VM name, inventory path or UUID')
      .option('--datacenter <name>', 'look the VM up in this datacenter')
      .requiredOption('--datastore <id>', 'the OpenNebula image datastore of the migration')
      .option('--json', 'JSON instead of text')
      .option('--name-prefix <prefix>', 'the --name-prefix the migration was started with (found by its images when this host has no journal of it)', '')
      .addOption(new Option('--transport <reader>', 'the --transport the cutover will run with').choices(['auto', 'folder', 'lease', 'vddk', 'nfc']).default('auto'))
      .option('--vddk-libdir <dir>', 'the --vddk-libdir the cutover will run with (env ONESWAP_VDDK_LIBDIR)')
      .option('--endpoint <url>', 'OpenNebula XML-RPC endpoint (default: ONE_XMLRPC, ~/.one/one_endpoint)')
      .option('--state-dir <dir>', 'where resume journals live (default: ~/.local/state/oneswap)'),
  ).action(async (vm: string, o: WarmStatusCliOptions) => {
    process.stdout.write(await runWarmStatus(vm, o, warn));
  });

  const plan = p.command('plan').description('migrate an estate from one reviewed plan file (docs/PLANS.md)');
  vcenterOptions(
    plan
      .command('new')
      .description('write a starting plan for the VMs the filters select: the vCenter, defaults with the networks mapped by name, budgets, one entry per VM with its facts')
      .requiredOption('--datastore <id>', 'OpenNebula image datastore the VMs go to')
      .addOption(new Option('--mode <mode>', 'cold or warm for every VM').choices(['cold', 'warm']).default('cold'))
      .option('--name <pattern>', 'only VMs whose names match (exact, or with * and ?)')
      .option('--datacenter <name>', 'only VMs in this datacenter (the plan looks VMs up there)')
      .option('--cluster <name>', 'only VMs in this cluster')
      .option('--power <state>', 'only VMs on, off or suspended')
      .option('--endpoint <url>', 'OpenNebula XML-RPC endpoint (default: ONE_XMLRPC, ~/.one/one_endpoint); also written into the plan')
      .option('-o, --output <file>', 'write the plan to this new file instead of stdout (an existing file is not overwritten)'),
  ).action(async (o: PlanNewCliOptions) => {
    const text = await runPlanNew(o, warn);
    if (text !== undefined) process.stdout.write(text);
  });
  plan
    .command('check')
    .description('every precheck for every VM of the plan, in one pass over the inventory, before anything is changed: blockers and warnings per VM, and the room of each target datastore for the whole plan; exit 6 when anything blocks')
    .argument('<plan>', 'the plan file')
    .option('--json', 'JSON instead of tables')
    .option('--vddk-libdir <dir>', "VMware's VDDK, to check which readers nbdkit offers (env ONESWAP_VDDK_LIBDIR)")
    .option('--endpoint <url>', "OpenNebula XML-RPC endpoint (default: the plan's, else ONE_XMLRPC, ~/.one/one_endpoint)")
    .option('--state-dir <dir>', 'where the runs keep their journals (default: ~/.local/state/oneswap)')
    .action(async (file: string, o: PlanCheckCliOptions) => {
      process.exitCode = await runPlanCheck(file, o, signal, warn);
    });
  plan
    .command('estimate')
    .description('a dry run that changes nothing: per VM and wave the bytes to move, copy and conversion times, warm downtime, and the wall time of the whole plan under its budgets; each figure says whether it is measured, from earlier runs, or assumed')
    .argument('<plan>', 'the plan file')
    .option('--json', 'JSON instead of tables')
    .option('--sync-interval <duration>', 'warm: the interval plan run will use', '5m')
    .option('--vddk-libdir <dir>', "VMware's VDDK, to know which reader a run would use (env ONESWAP_VDDK_LIBDIR)")
    .option('--state-dir <dir>', 'where measured rates and past conversions are kept (default: ~/.local/state/oneswap)')
    .action(async (file: string, o: PlanEstimateCliOptions) => {
      process.stdout.write(await runPlanEstimate(file, o, signal, warn));
    });
  plan
    .command('run')
    .description("migrate every VM of the plan under its budgets: waves in order, VMs by priority, warm ones syncing until their window; a failed VM never stops the others; run it again after a crash or Ctrl-C to resume")
    .argument('<plan>', 'the plan file')
    .addOption(new Option('--progress <mode>', 'progress display').choices(['tty', 'plain', 'json']))
    .option('--streams <n>', 'parallel range streams per disk', '4')
    .option('--sync-interval <duration>', 'warm: time between the starts of two rounds while waiting for the window', '5m')
    .option('--shutdown-timeout <seconds>', 'how long to wait for a guest to shut down', '300')
    .option('--vddk-libdir <dir>', "VMware's VDDK for nbdkit's vddk plugin (env ONESWAP_VDDK_LIBDIR)")
    .option('--endpoint <url>', "OpenNebula XML-RPC endpoint (default: the plan's, else ONE_XMLRPC, ~/.one/one_endpoint)")
    .option('--state-dir <dir>', 'where journals, the plan\'s status and logs live (default: ~/.local/state/oneswap)')
    .option('--log-dir <dir>', 'where the run log and the summary go (default: <state-dir>/logs)')
    .action(async (file: string, o: PlanRunCliOptions) => {
      process.exitCode = await runPlanRun(file, o, signal);
    });
  plan
    .command('status')
    .description("every VM of the plan's last run on this host: phase, progress, rate, ETA, last error (the run may be going on in another shell)")
    .argument('<plan>', 'the plan file')
    .option('--json', 'JSON instead of a table')
    .option('--state-dir <dir>', 'where the plan ran with (default: ~/.local/state/oneswap)')
    .action(async (file: string, o: PlanStatusCliOptions) => {
      process.stdout.write(await runPlanStatus(file, o));
    });

  p.command('convert')
    .description('convert the guest on images that hold a copied VM (after a failed conversion or --no-convert); copies nothing')
    .option('--image <id[,id...]>', 'the images, boot disk first (repeatable)', collect, [] as string[])
    .option('--vm <name>', 'the images oneswap imported from this VM')
    .option('--firmware <bios|efi>', 'the guest firmware (default: as recorded at import, else bios)')
    .option('--context-package <file>', 'install this OpenNebula context package (.deb/.rpm) at the guest\'s first boot')
    .option('--guest-agent', 'install qemu-guest-agent at the guest\'s first boot')
    .addOption(new Option('--progress <mode>', 'progress display').choices(['tty', 'plain', 'json']))
    .option('--endpoint <url>', 'OpenNebula XML-RPC endpoint (default: ONE_XMLRPC, ~/.one/one_endpoint)')
    .option('--state-dir <dir>', 'where work files and logs live (default: ~/.local/state/oneswap)')
    .option('--log-dir <dir>', 'where run and conversion logs go (default: <state-dir>/logs)')
    .action(async (o: ConvertCliOptions) => {
      process.exitCode = await runConvert(o, signal);
    });

  p.command('market')
    .description('oneswap marketplaces in OpenNebula')
    .command('refresh')
    .description(
      "list a oneswap marketplace's vCenter VMs now instead of at OpenNebula's next market monitor (every MONITORING_INTERVAL_MARKET, 600 s by default): disables and enables it (its apps get new ids) and waits for the listing",
    )
    .argument('<id>', 'the marketplace id (onemarket list)')
    .option('--timeout <seconds>', 'how long to wait for the listing', '120')
    .option('--endpoint <url>', 'OpenNebula XML-RPC endpoint (default: ONE_XMLRPC, ~/.one/one_endpoint)')
    .action(async (id: string, o: MarketRefreshCliOptions) => {
      process.stdout.write(await runMarketRefresh(id, o, signal));
    });

  return p;
}

async function main(): Promise<void> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (name: string): void => {
    interrupts++;
    if (interrupts > 1) {
      process.stderr.write(`oneswap: ${name} again, exiting without cleaning up; re-run the same command to resume or clean up\n`);
      process.exit(130);
    }
    process.stderr.write(`oneswap: ${name} received, stopping and cleaning up (press again to exit at once)\n`);
    controller.abort(new OneswapError('interrupted', `interrupted by ${name}`));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  try {
    await program(controller.signal).parseAsync(process.argv);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      // commander already printed its message (help, version, usage error).
      process.exitCode = code === 'commander.helpDisplayed' || code === 'commander.version' ? 0 : 2;
      return;
    }
    process.stderr.write(`oneswap: ${describeError(err)}\n`);
    process.exitCode = exitCodeOf(err);
  }
}

await main();
