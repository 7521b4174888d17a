/**
 * The HTTP endpoint: POST /RPC2 on 127.0.0.1, XML-RPC dispatch with oned's
 * reply shapes and xmlrpc-c faults.
 */
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { ErrorCode, RequestError, formatFailure } from './errors.js';
import { METHODS } from './methods.js';
import { CallContext, Sim } from './simulator.js';
import { FAULT_INDEX, FAULT_NO_SUCH_METHOD, XmlRpcFault, XrOut, checkSignature, failureReply, faultXml, parseMethodCall, responseXml, str, successReply } from './wire.js';

export interface CallRecord {
  method: string;
  params: unknown[];
  reply: 'success' | 'failure' | 'fault';
  code: number;
  message?: string;
}

export async function dispatch(sim: Sim, body: string, calls: CallRecord[]): Promise<string> {
  let method = '';
  try {
    const call = parseMethodCall(body);
    method = call.method;
    const spec = METHODS[method];
    if (!spec) throw new XmlRpcFault(FAULT_NO_SUCH_METHOD, `Method '${method}' not defined`);
    checkSignature(call.params, spec.sig, spec.required);
    if (spec.pairs && call.params.length > spec.pairs.ifMoreThan && call.params.length < spec.pairs.need) {
      throw new XmlRpcFault(FAULT_INDEX, 'Not enough parameters');
    }
    let ctx: CallContext | undefined;
    let reply: XrOut;
    try {
      ctx = sim.authenticate(method, str(call.params, 0));
      const value = await spec.handler(sim, ctx, call.params);
      reply = successReply(value);
      calls.push({ method, params: call.params, reply: 'success', code: 0 });
    } catch (e) {
      const err = e instanceof RequestError ? e : new RequestError(ErrorCode.INTERNAL, e instanceof Error ? e.message : String(e));
      const msg = formatFailure(method, err, ctx?.uid ?? -1, spec.object);
      reply = failureReply(msg, err.code, err.respId);
      calls.push({ method, params: call.params, reply: 'failure', code: err.code, message: msg });
    }
    return responseXml(reply);
  } catch (e) {
    if (e instanceof XmlRpcFault) {
      calls.push({ method, params: [], reply: 'fault', code: e.code, message: e.message });
      return faultXml(e.code, e.message);
    }
    throw e;
  }
}

export interface RpcServer {
  endpoint: string;
  close(): Promise<void>;
}

export async function startServer(sim: Sim, calls: CallRecord[]): Promise<RpcServer> {
  const server = http.createServer((req, res) => {
    if (req.url !== '/RPC2' && !req.url?.startsWith('/RPC2?')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Not Found');
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { 'Content-Type': 'text/plain', Allow: 'POST' }).end('Method Not Allowed');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      dispatch(sim, Buffer.concat(chunks).toString('utf8'), calls)
        .then((xml) => {
          res.writeHead(200, { 'Content-Type': 'text/xml; charset=utf-8', 'Content-Length': Buffer.byteLength(xml) }).end(xml);
        })
        .catch((e: unknown) => {
          res.writeHead(500, { 'Content-Type': 'text/plain' }).end(String(e));
        });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}/RPC2`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
