/**
 * A pass-through in front of a Docker engine's socket that writes down every container created through it.
 *
 * `node docker-recorder.js LISTEN_SOCKET ENGINE_SOCKET RECORD_FILE`: the leftovers check of each test file
 * (leftovers-environment.js) starts one and points the file's DOCKER_HOST at it, so whatever the file starts (its
 * own dockerode, runners, the docker CLI of a generated script) reaches the engine through it. The id of each
 * container created is appended to RECORD_FILE before the creator hears of it, so the check judges exactly the
 * containers the file made, however many others use the same engine meanwhile. Requests and responses pass
 * unchanged, streams and upgraded connections (attach, exec) included. It runs as a process of its own so that a test
 * blocking its event loop (execFileSync of the docker CLI) cannot block the engine's traffic.
 */
const http = require('node:http');
const net = require('node:net');
const { appendFileSync, rmSync } = require('node:fs');

const [listen, engine, record] = process.argv.slice(2);
const CREATE = /^\/(v[\d.]+\/)?containers\/create(\?|$)/;
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

const server = http.createServer((req, res) => {
  const upstream = http.request({ socketPath: engine, method: req.method, path: req.url, headers: req.headers, agent }, (answer) => {
    if (req.method === 'POST' && CREATE.test(req.url) && answer.statusCode === 201) {
      const chunks = [];
      answer.on('data', (c) => chunks.push(c));
      answer.on('end', () => {
        const body = Buffer.concat(chunks);
        try { appendFileSync(record, `${JSON.parse(body.toString('utf8')).Id}\n`); } catch { /* not JSON: nothing to note */ }
        res.writeHead(answer.statusCode, answer.rawHeaders);
        res.end(body);
      });
      return;
    }
    res.writeHead(answer.statusCode, answer.rawHeaders);
    // At once: a client may wait for the headers of a long poll (docker run's /wait) before its next request.
    res.flushHeaders();
    answer.pipe(res);
  });
  upstream.on('error', (err) => { if (!res.headersSent) { res.writeHead(502); } res.end(String(err)); });
  req.pipe(upstream);
  res.on('close', () => { if (!res.writableFinished) upstream.destroy(); });
});

// Attach and exec ask to upgrade the connection to a raw stream: forward the request as it came, then the bytes.
server.on('upgrade', (req, socket, head) => {
  const upstream = net.connect(engine, () => {
    const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
    if (head.length) upstream.write(head);
    upstream.pipe(socket);
    socket.pipe(upstream);
  });
  const close = () => { upstream.destroy(); socket.destroy(); };
  upstream.on('error', close);
  socket.on('error', close);
  upstream.on('close', close);
  socket.on('close', close);
});

server.requestTimeout = 0;
server.keepAliveTimeout = 60_000;
rmSync(listen, { force: true });
server.listen(listen, () => process.send?.('ready'));
process.on('SIGTERM', () => process.exit(0));
process.on('disconnect', () => process.exit(0));
