// toolgate against the official TypeScript MCP SDK: one package and one protocol era per run.
//
// Usage: node ts_client.mjs --url URL --package sdk|client --era legacy|auto [--expect-echo TEXT]
//   --package sdk     @modelcontextprotocol/sdk 1.x (2025 era only: it knows no 2026-07-28 and no server/discover)
//   --package client  @modelcontextprotocol/client 2.x (versionNegotiation: 'legacy', or 'auto' = server/discover)
// The agent token comes from the TOOLGATE_TOKEN environment variable (never argv: it would show in `ps`).
//
// Connects through the SDK's own Client and StreamableHTTPClientTransport, lists tools, calls `echo`, calls
// `read_file` on /etc/passwd (denied by toolgate's shipped policy), ends the session (2025 era) and prints
// exactly one JSON line: what it saw and `failures`, the checks that did not hold. It exits 0 when the run
// completed: the Rust test (proxy/tests/sdk_clients.rs) asserts on the line, so a failure shows what was seen.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';

const ECHO_TEXT = 'hello from the typescript sdk';
const DENIED_PREFIX = 'denied by policy toolgate.filesystem.system_path: ';

const { values: args } = parseArgs({
    options: {
        url: { type: 'string' },
        package: { type: 'string', default: 'client' },
        era: { type: 'string', default: 'legacy' },
        'expect-echo': { type: 'string', default: ECHO_TEXT },
    },
});
const token = process.env.TOOLGATE_TOKEN ?? '';
const report = { sdk: `typescript:${args.package}`, era: args.era, failures: [], http: [] };

// Every HTTP exchange the SDK makes, without the token: method, JSON-RPC method, status, session header.
function recordingFetch(log) {
    return async (url, init = {}) => {
        const headers = new Headers(init.headers);
        const entry = { method: init.method ?? 'GET', session_header: headers.has('mcp-session-id') };
        if (typeof init.body === 'string') {
            try {
                const body = JSON.parse(init.body);
                entry.rpc = body.method ?? 'response';
            } catch {
                // not JSON: leave rpc out
            }
        }
        const response = await fetch(url, init);
        entry.status = response.status;
        entry.content_type = response.headers.get('content-type') ?? '';
        log.push(entry);
        return response;
    };
}

// The installed version of a package whose exports map hides its package.json: walk up from its entry point.
function installedVersion(require, name, entry) {
    let dir = dirname(require.resolve(entry));
    while (dir !== dirname(dir)) {
        try {
            const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
            if (pkg.name === name) return pkg.version;
        } catch {
            // no package.json here: keep walking up
        }
        dir = dirname(dir);
    }
    return null;
}

async function load(pkg) {
    const require = createRequire(import.meta.url);
    if (pkg === 'sdk') {
        const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
        const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
        const version = installedVersion(require, '@modelcontextprotocol/sdk', '@modelcontextprotocol/sdk/client/index.js');
        return { Client, StreamableHTTPClientTransport, version };
    }
    if (pkg === 'client') {
        const { Client, StreamableHTTPClientTransport } = await import('@modelcontextprotocol/client');
        const version = installedVersion(require, '@modelcontextprotocol/client', '@modelcontextprotocol/client');
        return { Client, StreamableHTTPClientTransport, version };
    }
    throw new Error(`unknown --package ${pkg}`);
}

// @modelcontextprotocol/sdk 1.x prefixes the server's message with "MCP error <code>: "; 2.x keeps it as sent.
function serverMessage(e) {
    const prefix = `MCP error ${e.code}: `;
    return typeof e.message === 'string' && e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
}

async function run() {
    const failures = report.failures;
    const sdk = await load(args.package);
    report.sdk_version = sdk.version;
    const options = { capabilities: {} };
    if (args.package === 'client') {
        options.versionNegotiation = { mode: args.era };
    } else if (args.era !== 'legacy') {
        throw new Error('@modelcontextprotocol/sdk 1.x speaks only the 2025 era: use --package client for auto');
    }
    const client = new sdk.Client({ name: 'toolgate-sdk-test', version: '1.0.0' }, options);
    const transport = new sdk.StreamableHTTPClientTransport(new URL(args.url), {
        requestInit: { headers: { Authorization: `Bearer ${token}` } },
        fetch: recordingFetch(report.http),
    });
    await client.connect(transport, { timeout: 20000 });
    // 2.x reports the negotiated version on the client; 1.x only on the transport (its MCP-Protocol-Version header).
    report.protocol_version = client.getNegotiatedProtocolVersion?.() ?? transport.protocolVersion ?? null;
    report.era_negotiated = client.getProtocolEra?.() ?? 'legacy';
    report.discovered = Boolean(client.getDiscoverResult?.());
    report.session_id_seen = Boolean(transport.sessionId);

    const tools = await client.listTools();
    const names = tools.tools.map(t => t.name);
    report.tools = names;
    if (!names.includes('echo')) failures.push(`echo missing from tools/list: ${names}`);
    if (names.includes('run_shell')) failures.push('run_shell listed for an agent without the shell role');

    const echoed = await client.callTool({ name: 'echo', arguments: { text: ECHO_TEXT } });
    report.echo_text = echoed.content.filter(c => c.type === 'text').map(c => c.text).join('');
    report.echo_is_error = Boolean(echoed.isError);
    if (!report.echo_text.includes(args['expect-echo']) || echoed.isError) {
        failures.push(`echo answered ${JSON.stringify(report.echo_text)} (isError=${echoed.isError})`);
    }

    try {
        const result = await client.callTool({ name: 'read_file', arguments: { path: '/etc/passwd' } });
        failures.push(`read_file /etc/passwd was not refused: ${JSON.stringify(result).slice(0, 300)}`);
    } catch (e) {
        report.denied_code = e.code ?? null;
        report.denied_message = serverMessage(e);
        if (e.code !== -31001) failures.push(`read_file refused with code ${e.code}, want -31001: ${e.message}`);
        if (!String(report.denied_message).startsWith(DENIED_PREFIX)) {
            failures.push(`read_file refused with message ${JSON.stringify(e.message)}`);
        }
    }

    // The TypeScript transports do not end a session on close(); terminateSession() sends the DELETE.
    if (transport.sessionId) await transport.terminateSession();
    await client.close();
    report.closed = true;

    const deletes = report.http.filter(x => x.method === 'DELETE');
    report.delete_status = deletes.length ? deletes[deletes.length - 1].status : null;
    report.sent_session_header = report.http.some(x => x.session_header);
    if (report.era_negotiated === 'modern') {
        if (report.sent_session_header) failures.push('a stateless-era client sent Mcp-Session-Id');
        if (report.http.some(x => x.rpc === 'initialize')) failures.push('a stateless-era client sent initialize');
    } else {
        if (!report.session_id_seen) failures.push('a 2025-era connection without Mcp-Session-Id');
        if (![200, 204].includes(report.delete_status)) {
            failures.push(`session not closed cleanly: DELETE answered ${report.delete_status}`);
        }
    }
}

try {
    await run();
} catch (e) {
    report.failures.push(`exception: ${e?.name ?? 'Error'}: ${e?.message ?? e}`);
    report.stack = String(e?.stack ?? '').split('\n').slice(0, 8).join('\n');
}
process.stdout.write(JSON.stringify(report) + '\n');
// Transports may hold sockets open (the GET stream); the report is out, so end now.
process.exit(0);
