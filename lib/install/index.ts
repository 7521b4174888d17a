// install: what install.sh needs that shell does badly. Registering the oneswap datastore and
// marketplace drivers in oned.conf and taking them out again, as pure functions over the file's
// text (register → unregister gives the original bytes; register is idempotent), and the list of
// production node_modules to copy into the installed program. install.sh runs them through
// main.ts (`node dist/lib/install/main.js register|unregister FILE | modules ROOT`), which adds
// the backup and the atomic write.

export {
  register,
  unregister,
  isRegistered,
  OnedConfError,
  DRIVER_NAME,
  BEGIN_MARKER,
  END_MARKER,
  DS_MAD_CONF_BLOCK,
  MARKET_MAD_CONF_BLOCK,
  type EditResult,
} from './oned-conf.js';
export { productionModules, productionPackages, isTopLevel, type ProductionModules } from './modules.js';
