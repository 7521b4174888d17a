/** Where the vSphere client reports what the user should know but that is not an error. */
export interface VSphereLogger {
  warn(message: string): void;
  debug?(message: string): void;
}
