/**
 * OpenNebula client.
 *
 * - `OneClient.connect()` finds oned and the credentials as the `one*` commands do (ONE_XMLRPC,
 *   ONE_AUTH, ~/.one, /var/lib/one/.one), checks them with one call, and offers typed methods for
 *   the calls oneswap makes: images (allocate, wait until READY, update, chown, delete …),
 *   datastores, VM templates (allocate, instantiate …), VMs, virtual networks, users, oned.conf.
 *   Every call has a timeout (30 s, ONE_XMLRPC_TIMEOUT) and can be cancelled.
 * - `Template`: OpenNebula's template model (ordered, repeatable attributes, vectors), written as
 *   XML (what is sent to oned) or as the text syntax (files for people), read back from documents
 *   and from text.
 * - `sanitizeName`: makes any string a valid OpenNebula object name.
 * - Failures are `OneswapError`s; those oned reported are `OneApiError`s carrying oned's own message,
 *   its error code and the method.
 */

export { OneClient, PoolFilter } from './client.js';
export type { ConnectOptions, InstantiateOptions, VmAction, WaitForImageOptions } from './client.js';
export { ImageState, parseDriverActionData, withImageSource } from './documents.js';
export type {
  DatastoreTypeName,
  ImageStateName,
  ImageTypeName,
  OneAddressRange,
  DriverActionData,
  OneDatastore,
  OneMarketplace,
  OneImage,
  OneLease,
  OneTemplate,
  OneUser,
  OneVm,
  OneVmDisk,
  OneVmNic,
  OneVnet,
} from './documents.js';
export { OneApiError, OneErrorCode, oneLine } from './errors.js';
export { sanitizeName } from './names.js';
export { Template, parseTemplateText } from './template.js';
export type { TemplateAttribute, TemplateInput, TemplateValue, TemplateVector } from './template.js';
