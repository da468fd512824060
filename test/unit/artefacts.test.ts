import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse } from 'yaml';
import type { ContainerSpec } from '../../subgraphs/ark/instances';
import {
  SUMMARY_COLUMNS, composeFile, configSummary, deploymentScript, shellQuote, shellScript, summaryRows, type SummaryRow,
} from '../../subgraphs/panama/artefacts';
import { NETWORK } from '../../runner/plan';
import { fillSecrets, secretToken } from '../../lib/secrets';

const NASTY = `it's "quoted" $HOME \${PATH} \`id\` \\ back; slash | pipe & amp\nsecond line\ttab *`;

const spec = (over: Partial<ContainerSpec> = {}): ContainerSpec => ({
  image: 'fangzhou/demo:1',
  env: [{ name: 'GREETING', value: 'hello world' }, { name: 'NASTY', value: NASTY }, { name: 'EMPTY', value: '' }],
  ports: [{ name: 'http', containerPort: 8080, protocol: 'tcp' }, { name: 'dns', containerPort: 53, protocol: 'udp' }],
  cpuMillis: 250,
  memoryMb: 64,
  healthcheck: {
    command: ['CMD', '/bin/busybox', 'wget', '-q', '-O', '/dev/null', 'http://127.0.0.1:8080/healthz?a=1&b=2'],
    intervalSeconds: 2, timeoutSeconds: 3, retries: 4, startPeriodSeconds: 5,
  },
  configFiles: [
    { path: '/etc/demo/app.conf', content: 'name = $NAME\nliteral \\n and `tick`\n' },
    { path: '/etc/demo/tricky', content: 'FANGZHOU_EOF\nends without newline' },
    { path: '/etc/demo/empty', content: '' },
  ],
  ...over,
});

const release = { id: 'r-abc', name: 'demo', product: 'demo', version: '1.0.0', revision: 2 };
const instances = [1, 0].map((ordinal) => ({
  id: `r-abc-${ordinal}`, ordinal, domainName: `demo-${ordinal}.demo.fz.internal`, spec: spec(), specHash: `hash-${ordinal}`,
}));

describe('shell script', () => {
  test('is a POSIX sh script with set -eu, explained in comments, that sh -n accepts', () => {
    const script = deploymentScript('SHELL', release, instances);
    expect(script.startsWith('#!/bin/sh\n# Fangzhou deployment script for release "demo" (r-abc): product demo 1.0.0, revision 2, 2 instance(s).')).toBe(true);
    expect(script).toMatch(/^set -eu$/m);
    expect(script).not.toMatch(/--label 'fangzhou\.host/);
    // It says what of the fleet network it cannot reproduce on one plain Docker host.
    expect(script).toMatch(/^# Not reproduced: the fleet network\./m);
    const syntax = spawnSync('sh', ['-n'], { input: script, encoding: 'utf8' });
    expect(syntax.stderr).toBe('');
    expect(syntax.status).toBe(0);
  });

  test('shellQuote survives sh exactly', () => {
    for (const value of [NASTY, '', "'", "''", 'a\'b"c$d`e\\f\ng']) {
      const out = spawnSync('sh', ['-c', `printf '%s' ${shellQuote(value)}`], { encoding: 'utf8' });
      expect(out.stdout).toBe(value);
    }
  });

  describe('run against a stub docker command', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(path.join(tmpdir(), 'fz-script-'));
      // Records each call's arguments (NUL-separated, calls separated by a lone \x1e); "container inspect" finds no
      // container unless STUB_MANAGED is set, in which case it reports that fangzhou.managed value.
      writeFileSync(path.join(dir, 'docker'), [
        '#!/bin/sh',
        '{ for a in "$@"; do printf \'%s\\0\' "$a"; done; printf \'\\036\\0\'; } >> "$STUB_LOG"',
        'case "$1 $2" in',
        '  "container inspect") if [ -n "${STUB_MANAGED:-}" ]; then echo "$STUB_MANAGED"; exit 0; fi; exit 1 ;;',
        '  "network inspect") exit 0 ;;',
        '  "ps -a") exit 0 ;;',
        '  "run --detach") echo 0123456789abcdef ;;',
        'esac',
        'exit 0',
      ].join('\n'));
      chmodSync(path.join(dir, 'docker'), 0o755);
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    const run = (script: string, env: Record<string, string> = {}) => {
      writeFileSync(path.join(dir, 'deploy.sh'), script);
      const result = spawnSync('sh', [path.join(dir, 'deploy.sh')], {
        cwd: tmpdir(), encoding: 'utf8',
        env: { PATH: `${dir}:${process.env.PATH}`, STUB_LOG: path.join(dir, 'calls'), ...env },
      });
      let calls: string[][] = [];
      try {
        calls = readFileSync(path.join(dir, 'calls'), 'utf8').split('\x1e\0').filter(Boolean)
          .map((call) => call.split('\0').slice(0, -1));
      } catch { /* no calls */ }
      return { ...result, calls };
    };

    test('passes nasty env values, labels, limits, ports, healthcheck and alias to docker run exactly', () => {
      const { status, stderr, calls } = run(shellScript(release, instances));
      expect(stderr).toBe('');
      expect(status).toBe(0);
      const runs = calls.filter((c) => c[0] === 'run');
      expect(runs).toHaveLength(2);
      const configDir = path.join(dir, 'fangzhou-config');
      expect(runs[0]).toEqual([
        'run', '--detach',
        '--name', 'fz-demo-0',
        '--label', 'fangzhou.managed=script',
        '--label', 'fangzhou.instance=r-abc-0',
        '--label', 'fangzhou.release=r-abc',
        '--label', 'fangzhou.spec=hash-0',
        '--env', 'GREETING=hello world',
        '--env', `NASTY=${NASTY}`,
        '--env', 'EMPTY=',
        '--memory', '64m',
        '--cpus', '0.25',
        '--restart', 'unless-stopped',
        '--publish', '8080/tcp',
        '--publish', '53/udp',
        '--health-cmd', "/bin/busybox wget -q -O /dev/null 'http://127.0.0.1:8080/healthz?a=1&b=2'",
        '--health-interval', '2s',
        '--health-timeout', '3s',
        '--health-retries', '4',
        '--health-start-period', '5s',
        '--network', NETWORK,
        '--network-alias', 'demo-0.demo.fz.internal',
        '--mount', `type=bind,source=${configDir}/fz-demo-0/etc/demo/app.conf,target=/etc/demo/app.conf,readonly`,
        '--mount', `type=bind,source=${configDir}/fz-demo-0/etc/demo/tricky,target=/etc/demo/tricky,readonly`,
        '--mount', `type=bind,source=${configDir}/fz-demo-0/etc/demo/empty,target=/etc/demo/empty,readonly`,
        'fangzhou/demo:1',
      ]);
      expect(runs[1]).toContain('fz-demo-1');
      // Every name is checked before anything is removed or created.
      const firstChange = calls.findIndex((c) => c[0] === 'run' || c[0] === 'rm');
      expect(calls.filter((c, i) => c[0] === 'container' && c[2] === '--format' && i < (firstChange < 0 ? Infinity : firstChange))).toHaveLength(2);
    });

    test('writes config files byte for byte under FZ_CONFIG_DIR', () => {
      const configDir = path.join(dir, 'custom config');
      const { status, stderr } = run(shellScript(release, instances), { FZ_CONFIG_DIR: configDir });
      expect(stderr).toBe('');
      expect(status).toBe(0);
      for (const f of spec().configFiles) {
        expect(readFileSync(path.join(configDir, 'fz-demo-1', f.path), 'utf8')).toBe(f.content);
      }
    });

    test('fills secret tokens in config files from the caller\'s environment, byte for byte as the runner gets them', () => {
      const files = [
        { path: '/etc/demo/auth.conf', content: `a=${secretToken('A')}${secretToken('A')} and ${secretToken('B')}\n\nend ${secretToken('A')}` },
        { path: '/etc/demo/one', content: `x=${secretToken('B')}\n` },
        { path: '/etc/demo/blank-end', content: `${secretToken('A')}\n\n` },
      ];
      // Characters sed, gsub, printf or the shell would read: the value is put in as it is, its own token not filled again.
      const values = new Map([['A', `pa$$ "w0rd" & \\1 \`id\` %s ${secretToken('A')} ünï`], ['B', 'two\nlines\n']]);
      const secretEnv = [...values.keys()].map((name) => ({ name, sealed: 'not read by the script' }));
      const script = shellScript(release, [{ ...instances[1], spec: spec({ configFiles: files, secretEnv }) }]);
      expect(script).not.toContain(values.get('A'));

      const configDir = path.join(dir, 'config');
      const { status, stderr } = run(script, { FZ_CONFIG_DIR: configDir, ...Object.fromEntries(values) });
      expect(stderr).toBe('');
      expect(status).toBe(0);
      for (const f of files) expect(readFileSync(path.join(configDir, 'fz-demo-0', f.path), 'utf8')).toBe(fillSecrets(f.content, values));
    });

    test('refuses to replace a container a host runner manages, before changing anything', () => {
      const { status, stderr, calls } = run(shellScript(release, instances), { STUB_MANAGED: 'true' });
      expect(status).toBe(1);
      expect(stderr).toContain('a container named fz-demo-0 exists that no Fangzhou script created (it has fangzhou.managed=true');
      expect(calls.some((c) => c[0] === 'run' || c[0] === 'rm' || c[1] === 'create')).toBe(false);
    });

    test('replaces a container an earlier script run created', () => {
      const { status, calls } = run(shellScript(release, instances), { STUB_MANAGED: 'script' });
      expect(status).toBe(0);
      expect(calls.filter((c) => c[0] === 'rm').map((c) => c.at(-1))).toEqual(['fz-demo-0', 'fz-demo-1']);
    });
  });

  test('a bare healthcheck command and CMD-SHELL become the shell command docker run takes', () => {
    const hc = { intervalSeconds: 1, timeoutSeconds: 1, retries: 1, startPeriodSeconds: 0 };
    const bare = shellScript(release, [{ ...instances[0], spec: spec({ healthcheck: { ...hc, command: ['redis-cli', 'ping'] } }) }]);
    expect(bare).toContain("--health-cmd 'redis-cli ping'");
    const shell = shellScript(release, [{ ...instances[0], spec: spec({ healthcheck: { ...hc, command: ['CMD-SHELL', 'test -f /tmp/ok || exit 1'] } }) }]);
    expect(shell).toContain("--health-cmd 'test -f /tmp/ok || exit 1'");
  });

  test('a config path that cannot be mounted safely is refused', () => {
    const bad = [{ ...instances[0], spec: spec({ configFiles: [{ path: '/etc/a,b', content: '' }] }) }];
    expect(() => shellScript(release, bad)).toThrow(/cannot be mounted/);
  });
});

describe('compose file', () => {
  const text = deploymentScript('COMPOSE', release, instances);
  const doc = parse(text);

  test('starts with comments and has one service per instance, named like the runner names containers', () => {
    expect(text.startsWith('# Fangzhou compose file for release "demo" (r-abc)')).toBe(true);
    expect(text).toMatch(/^# Not reproduced: the fleet network\./m);
    expect(doc.name).toBe('fz-demo');
    expect(Object.keys(doc.services)).toEqual(['fz-demo-0', 'fz-demo-1']);
    expect(doc.networks).toEqual({ [NETWORK]: { name: NETWORK } });
    for (const service of Object.values<{ labels: Record<string, string> }>(doc.services)) expect(service.labels['fangzhou.host']).toBeUndefined();
    expect(text).not.toMatch(/[&*]a\d/); // no YAML anchors or aliases
  });

  test('a service has the image, env ($ escaped for compose), labels, limits, ports, healthcheck, alias and configs', () => {
    const service = doc.services['fz-demo-0'];
    const dollars = (s: string) => s.replace(/\$/g, '$$$$');
    expect(service).toEqual({
      image: 'fangzhou/demo:1',
      container_name: 'fz-demo-0',
      environment: { GREETING: 'hello world', NASTY: dollars(NASTY), EMPTY: '' },
      labels: { 'fangzhou.managed': 'script', 'fangzhou.instance': 'r-abc-0', 'fangzhou.release': 'r-abc', 'fangzhou.spec': 'hash-0' },
      mem_limit: '64m',
      cpus: 0.25,
      restart: 'unless-stopped',
      ports: [{ target: 8080, protocol: 'tcp' }, { target: 53, protocol: 'udp' }],
      healthcheck: {
        test: ['CMD', '/bin/busybox', 'wget', '-q', '-O', '/dev/null', 'http://127.0.0.1:8080/healthz?a=1&b=2'],
        interval: '2s', timeout: '3s', retries: 4, start_period: '5s',
      },
      networks: { [NETWORK]: { aliases: ['demo-0.demo.fz.internal'] } },
      configs: [
        { source: 'fz-demo-0_etc_demo_app.conf', target: '/etc/demo/app.conf' },
        { source: 'fz-demo-0_etc_demo_tricky', target: '/etc/demo/tricky' },
        { source: 'fz-demo-0_etc_demo_empty', target: '/etc/demo/empty' },
      ],
    });
    expect(doc.configs['fz-demo-0_etc_demo_app.conf']).toEqual({ content: dollars(spec().configFiles[0].content) });
    expect(doc.configs['fz-demo-1_etc_demo_tricky']).toEqual({ content: spec().configFiles[1].content });
    expect(doc.configs['fz-demo-1_etc_demo_empty']).toEqual({ content: '' });
  });

  test('without config files or healthcheck those keys are left out', () => {
    const plain = parse(composeFile(release, [{ ...instances[0], spec: spec({ configFiles: [], healthcheck: null, env: [] }) }]));
    expect(plain.configs).toBeUndefined();
    expect(plain.services['fz-demo-1'].healthcheck).toBeUndefined();
    expect(plain.services['fz-demo-1'].environment).toBeUndefined();
  });
});

describe('config summary', () => {
  const input = {
    releases: [
      { id: 'r-2', name: 'zk', product: 'zookeeper', version: '3.8.4', resources: { cpuMillis: 500, memoryMb: 512 } },
      { id: 'r-1', name: 'demo', product: 'demo', version: '1.0.0', resources: { cpuMillis: 100, memoryMb: 32 } },
    ],
    instances: [
      { id: 'r-1-1', releaseId: 'r-1', ordinal: 1, hostId: 'h-2', domainName: 'demo-1.demo.fz.internal', ip: '10.240.1.2', spec: spec({ cpuMillis: 100, memoryMb: 32 }) },
      { id: 'r-1-0', releaseId: 'r-1', ordinal: 0, hostId: 'h-1', domainName: 'demo-0.demo.fz.internal', spec: spec({ cpuMillis: 100, memoryMb: 32 }) },
    ],
    hosts: [{ id: 'h-1', name: 'node-a', address: '10.0.0.1' }, { id: 'h-2', name: 'node-b', address: '10.0.0.2' }],
    containers: [{
      instanceId: 'r-1-0', state: 'RUNNING', health: 'HEALTHY', ip: '172.18.0.2',
      ports: [{ containerPort: 8080, protocol: 'tcp', hostPort: 32768 }, { containerPort: 53, protocol: 'udp', hostPort: null }],
    }],
  };

  test('builds one row per instance, and one for a release without instances, by release name and ordinal; ip is the fixed address, else the one observed', () => {
    expect(summaryRows(input)).toEqual([
      {
        release: 'demo', product: 'demo', version: '1.0.0', instance: 'r-1-0', ordinal: 0, host: 'node-a', address: '10.0.0.1',
        ip: '172.18.0.2', domainName: 'demo-0.demo.fz.internal', ports: '8080/tcp->32768 53/udp', cpuMillis: 100, memoryMb: 32,
        state: 'RUNNING', health: 'HEALTHY',
      },
      {
        release: 'demo', product: 'demo', version: '1.0.0', instance: 'r-1-1', ordinal: 1, host: 'node-b', address: '10.0.0.2',
        ip: '10.240.1.2', domainName: 'demo-1.demo.fz.internal', ports: '8080/tcp 53/udp', cpuMillis: 100, memoryMb: 32,
        state: 'NOT REPORTED', health: '',
      },
      {
        release: 'zk', product: 'zookeeper', version: '3.8.4', instance: '', ordinal: null, host: '', address: '', ip: '',
        domainName: '', ports: '', cpuMillis: 500, memoryMb: 512, state: 'NO INSTANCES', health: '',
      },
    ]);
  });

  const row = (over: Partial<SummaryRow>): SummaryRow => ({
    release: 'demo', product: 'demo', version: '1.0.0', instance: 'r-1-0', ordinal: 0, host: 'node-a', address: '10.0.0.1',
    ip: '172.18.0.2', domainName: 'demo-0.demo.fz.internal', ports: '8080/tcp->32768', cpuMillis: 100, memoryMb: 32,
    state: 'RUNNING', health: 'HEALTHY', ...over,
  });

  test('CSV follows RFC 4180: header, CRLF, fields with comma, quote or line break quoted and quotes doubled', () => {
    const csv = configSummary('CSV', [row({}), row({ host: 'a,b', release: 'say "hi"', state: 'line1\nline2', ordinal: null })]);
    expect(csv).toBe([
      SUMMARY_COLUMNS.join(','),
      'demo,demo,1.0.0,r-1-0,0,node-a,10.0.0.1,172.18.0.2,demo-0.demo.fz.internal,8080/tcp->32768,100,32,RUNNING,HEALTHY',
      '"say ""hi""",demo,1.0.0,r-1-0,,"a,b",10.0.0.1,172.18.0.2,demo-0.demo.fz.internal,8080/tcp->32768,100,32,"line1\nline2",HEALTHY',
      '',
    ].join('\r\n'));
  });

  test('Markdown is a pipe table with pipes and backslashes escaped, numbers right-aligned', () => {
    const md = configSummary('MARKDOWN', [row({ host: 'a|b', release: 'back\\slash', state: 'x\ny' })]);
    const lines = md.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe(`| ${SUMMARY_COLUMNS.join(' | ')} |`);
    expect(lines[1]).toBe('| --- | --- | --- | --- | ---: | --- | --- | --- | --- | --- | ---: | ---: | --- | --- |');
    expect(lines[2]).toBe('| back\\\\slash | demo | 1.0.0 | r-1-0 | 0 | a\\|b | 10.0.0.1 | 172.18.0.2 | demo-0.demo.fz.internal | 8080/tcp->32768 | 100 | 32 | x<br>y | HEALTHY |');
    // Splitting on unescaped pipes gives exactly the columns back.
    expect(lines[2].split(/(?<!\\)\|/).slice(1, -1)).toHaveLength(SUMMARY_COLUMNS.length);
  });

  test('an empty table still has its header', () => {
    expect(configSummary('CSV', [])).toBe(`${SUMMARY_COLUMNS.join(',')}\r\n`);
    expect(configSummary('MARKDOWN', []).split('\n')).toHaveLength(3);
  });
});
