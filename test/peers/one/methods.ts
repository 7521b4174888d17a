/**
 * The method table: xmlrpc-c signature strings (reference §2.4), how many
 * parameters are required (session included; the rest are optional trailing
 * ones), the object named in failure messages, and the handler.
 */
import { datastoreAllocate, datastoreInfo, datastorePoolInfo } from './datastores.js';
import { ObjectKind } from './errors.js';
import {
  imageAllocate, imageChtype, imageDelete, imageInfo, imagePersistent, imagePoolInfo, imageRename, imageUpdate, getImage,
} from './images.js';
import { CallContext, Sim } from './simulator.js';
import { systemConfig, systemVersion } from './system.js';
import { chownObject, userInfo, userLogin } from './users.js';
import { XrValue, int } from './wire.js';
import * as templates from './templates.js';
import * as vms from './vms.js';
import * as vnets from './vnets.js';
import * as markets from './markets.js';

export type Handler = (sim: Sim, call: CallContext, p: XrValue[]) => Promise<string | number | boolean> | string | number | boolean;

export interface MethodSpec {
  sig: string;
  required: number;
  object?: ObjectKind;
  /** xmlrpc-c reads some optional parameters in pairs: more than `ifMoreThan` params → `need` required */
  pairs?: { ifMoreThan: number; need: number };
  handler: Handler;
}

export const METHODS: Record<string, MethodSpec> = {
  'one.system.version': { sig: 'A:s', required: 1, handler: (s) => systemVersion(s) },
  'one.system.config': { sig: 'A:s', required: 1, handler: (s, c) => systemConfig(s, c) },

  'one.user.info': { sig: 'A:sib', required: 2, object: 'user', handler: userInfo },
  'one.user.login': { sig: 'A:sssii', required: 5, object: 'user', handler: userLogin },

  'one.datastore.allocate': { sig: 'A:ssi', required: 3, object: 'datastore', handler: datastoreAllocate },
  'one.datastore.info': { sig: 'A:sib', required: 2, object: 'datastore', handler: datastoreInfo },
  'one.datastorepool.info': { sig: 'A:s', required: 1, object: 'datastore', handler: (s, c) => datastorePoolInfo(s, c) },

  'one.image.allocate': { sig: 'A:ssib', required: 3, object: 'image', handler: imageAllocate },
  'one.image.info': { sig: 'A:sib', required: 2, object: 'image', handler: imageInfo },
  'one.image.delete': { sig: 'A:sib', required: 2, object: 'image', handler: imageDelete },
  'one.image.update': { sig: 'A:sisi', required: 3, object: 'image', handler: imageUpdate },
  'one.image.chtype': { sig: 'A:sis', required: 3, object: 'image', handler: imageChtype },
  'one.image.persistent': { sig: 'A:sib', required: 3, object: 'image', handler: imagePersistent },
  'one.image.rename': { sig: 'A:sis', required: 3, object: 'image', handler: imageRename },
  'one.image.chown': {
    sig: 'A:siii',
    required: 4,
    object: 'image',
    handler: (s, c, p) => chownObject(s, c, getImage(s, int(p, 1)), 'image', s.pools.images.values(), int(p, 2), int(p, 3)),
  },
  'one.imagepool.info': { sig: 'A:siii', required: 4, object: 'image', handler: imagePoolInfo },

  'one.template.allocate': { sig: 'A:ss', required: 2, object: 'template', handler: templates.templateAllocate },
  'one.template.info': { sig: 'A:sibb', required: 2, object: 'template', handler: templates.templateInfo },
  'one.template.update': { sig: 'A:sisi', required: 3, object: 'template', handler: templates.templateUpdate },
  // 7.x signature string is A:si; the optional recursive flag is still read when sent
  'one.template.delete': { sig: 'A:sib', required: 2, object: 'template', handler: templates.templateDelete },
  'one.template.instantiate': { sig: 'A:sisbsb', required: 3, pairs: { ifMoreThan: 3, need: 5 }, object: 'template', handler: templates.templateInstantiate },
  'one.template.rename': { sig: 'A:sis', required: 3, object: 'template', handler: templates.templateRename },
  'one.template.chown': {
    sig: 'A:siii',
    required: 4,
    object: 'template',
    handler: (s, c, p) => chownObject(s, c, templates.getTemplate(s, int(p, 1)), 'template', s.pools.templates.values(), int(p, 2), int(p, 3)),
  },
  'one.templatepool.info': { sig: 'A:siii', required: 4, object: 'template', handler: templates.templatePoolInfo },

  'one.vm.allocate': { sig: 'A:ssb', required: 2, object: 'vm', handler: vms.vmAllocate },
  'one.vm.info': { sig: 'A:sib', required: 2, object: 'vm', handler: vms.vmInfo },
  'one.vm.action': { sig: 'A:ssi', required: 3, object: 'vm', handler: vms.vmAction },
  'one.vm.chown': {
    sig: 'A:siii',
    required: 4,
    object: 'vm',
    handler: (s, c, p) => chownObject(s, c, vms.getVm(s, int(p, 1)), 'vm', s.pools.vms.values(), int(p, 2), int(p, 3)),
  },
  'one.vmpool.info': { sig: 'A:siiii', required: 5, object: 'vm', handler: vms.vmPoolInfo },

  'one.vn.info': { sig: 'A:sib', required: 2, object: 'vnet', handler: vnets.vnInfo },
  'one.vn.add_ar': { sig: 'A:sis', required: 3, object: 'vnet', handler: vnets.vnAddAr },
  'one.vn.rm_ar': { sig: 'A:sii', required: 3, object: 'vnet', handler: vnets.vnRmAr },
  'one.vnpool.info': { sig: 'A:siii', required: 4, object: 'vnet', handler: vnets.vnPoolInfo },

  // 7.x MarketPlaceXRPC: allocate reads only the template (extra parameters are ignored)
  'one.market.allocate': { sig: 'A:ss', required: 2, object: 'market', handler: markets.marketAllocate },
  'one.market.info': { sig: 'A:sib', required: 2, object: 'market', handler: markets.marketInfo },
  'one.market.update': { sig: 'A:sisi', required: 3, object: 'market', handler: markets.marketUpdate },
  'one.market.delete': { sig: 'A:si', required: 2, object: 'market', handler: markets.marketDelete },
  // the 7.x signature string says A:sii, the handler reads a boolean
  'one.market.enable': { sig: 'A:sib', required: 3, object: 'market', handler: markets.marketEnable },
  'one.marketpool.info': { sig: 'A:s', required: 1, object: 'market', handler: (s, c) => markets.marketPoolInfo(s, c) },
  'one.marketapp.info': { sig: 'A:sib', required: 2, object: 'marketapp', handler: markets.marketAppInfo },
  'one.marketapp.update': { sig: 'A:sisi', required: 3, object: 'marketapp', handler: markets.marketAppUpdate },
  'one.marketapp.delete': { sig: 'A:si', required: 2, object: 'marketapp', handler: markets.marketAppDelete },
  'one.marketapp.enable': { sig: 'A:sib', required: 3, object: 'marketapp', handler: markets.marketAppEnable },
  // the 7.x signature string says A:s, the handler reads filter, start and end
  'one.marketapppool.info': { sig: 'A:siii', required: 4, object: 'marketapp', handler: markets.marketAppPoolInfo },
};
