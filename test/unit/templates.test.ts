import { AppError } from '../../lib/errors';
import { fillSecrets, secretsIn } from '../../lib/secrets';
import { checkTemplates, renderTemplates, sampleContext, templateContext, type TemplateContext } from '../../subgraphs/panama/templates';

const release = { id: 'r-1', name: 'zk', version: '3.8.4', replicas: 3, env: [{ name: 'CLIENT_PORT', value: '2181' }, { name: 'TICK', value: '2000' }] };
const instances = [2, 0, 1].map((ordinal) => ({ id: `r-1-${ordinal}`, ordinal, domainName: `zk-${ordinal}.zk.fz.internal` }));
const ctx = (ordinal = 1): TemplateContext => templateContext(release, { name: 'zookeeper' }, instances, ordinal);

/** The AppError a call throws. */
function errorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected an error');
}

const check = (template: string, path = '/etc/redis.conf') =>
  errorOf(() => checkTemplates([{ path: '/etc/ok.conf', template: 'fine' }, { path, template }], { product: 'redis', env: [{ name: 'PORT', value: '6379' }] }));

describe('templateContext', () => {
  test('has the product, the release, the instance (number = ordinal + 1), peers in ordinal order and env', () => {
    expect(ctx(1)).toEqual({
      product: { name: 'zookeeper' },
      release: { id: 'r-1', name: 'zk', version: '3.8.4', replicas: 3 },
      instance: { id: 'r-1-1', ordinal: 1, number: 2, domainName: 'zk-1.zk.fz.internal', ip: null },
      peers: [0, 1, 2].map((o) => ({ id: `r-1-${o}`, ordinal: o, number: o + 1, domainName: `zk-${o}.zk.fz.internal`, ip: null })),
      env: { CLIENT_PORT: '2181', TICK: '2000' },
    });
  });

  test('an ordinal that is not among the instances is a programming error', () => {
    expect(errorOf(() => templateContext(release, { name: 'zookeeper' }, instances, 7)).extensions.code).toBe('INTERNAL');
  });
});

describe('renderTemplates', () => {
  test('renders a ZooKeeper config with the server list of all peers, per instance', () => {
    const zooCfg = [
      'tickTime={{env.TICK}}',
      'clientPort={{env.CLIENT_PORT}}',
      '{{#each peers}}',
      'server.{{number}}={{domainName}}:2888:3888',
      '{{/each}}',
    ].join('\n');
    const templates = [{ path: '/conf/zoo.cfg', template: zooCfg }, { path: '/data/myid', template: '{{instance.number}}' }];
    expect(renderTemplates(templates, ctx(2))).toEqual([
      {
        path: '/conf/zoo.cfg',
        content: [
          'tickTime=2000',
          'clientPort=2181',
          'server.1=zk-0.zk.fz.internal:2888:3888',
          'server.2=zk-1.zk.fz.internal:2888:3888',
          'server.3=zk-2.zk.fz.internal:2888:3888',
          '',
        ].join('\n'),
      },
      { path: '/data/myid', content: '3' },
    ]);
  });

  test('does not HTML-escape, and the helpers join, pluck and default work', () => {
    const [file] = renderTemplates([{
      path: '/x',
      template: '{{join (pluck peers "domainName") ","}} <{{release.name}}&> {{default env.MISSING "dflt"}} {{default env.TICK "x"}}'
        + ' {{#if env.MISSING}}no{{else}}optional{{/if}} {{#each peers as |p i|}}{{i}}={{p.number}}{{#unless @last}};{{/unless}}{{/each}}',
    }], ctx());
    expect(file.content).toBe('zk-0.zk.fz.internal,zk-1.zk.fz.internal,zk-2.zk.fz.internal <zk&> dflt 2000 optional 0=1;1=2;2=3');
  });

  test('each peer\'s ip is written beside its domain name, in #each and through pluck', () => {
    const placed = instances.map((i) => ({ ...i, ip: `10.240.${i.ordinal}.2` }));
    const templates = [
      { path: '/conf/zoo.cfg', template: '{{#each peers}}server.{{number}}={{domainName}}:2888:3888 # {{ip}}\n{{/each}}' },
      { path: '/conf/hosts', template: 'self={{instance.ip}} all={{join (pluck peers "ip") ","}}' },
    ];
    expect(renderTemplates(templates, templateContext(release, { name: 'zookeeper' }, placed, 1))).toEqual([
      {
        path: '/conf/zoo.cfg',
        content: 'server.1=zk-0.zk.fz.internal:2888:3888 # 10.240.0.2\n'
          + 'server.2=zk-1.zk.fz.internal:2888:3888 # 10.240.1.2\nserver.3=zk-2.zk.fz.internal:2888:3888 # 10.240.2.2\n',
      },
      { path: '/conf/hosts', content: 'self=10.240.1.2 all=10.240.0.2,10.240.1.2,10.240.2.2' },
    ]);
  });

  test('a peer not placed yet has no ip: it renders as nothing, #if tests it and default names it, never a made-up address', () => {
    const partly = instances.map((i) => ({ ...i, ip: i.ordinal === 2 ? null : `10.240.0.${i.ordinal + 2}` }));
    const [file] = renderTemplates([{
      path: '/x',
      template: '{{#each peers}}{{number}}:[{{ip}}] {{#if ip}}{{ip}}{{else}}{{domainName}}{{/if}} {{default ip "unplaced"}};{{/each}} {{join (pluck peers "ip") ","}}',
    }], templateContext(release, { name: 'zookeeper' }, partly, 0));
    expect(file.content).toBe('1:[10.240.0.2] 10.240.0.2 10.240.0.2;2:[10.240.0.3] 10.240.0.3 10.240.0.3;3:[] zk-2.zk.fz.internal unplaced; 10.240.0.2,10.240.0.3,');
  });

  test('a variable missing at deploy time fails with the path, line and variable', () => {
    const err = errorOf(() => renderTemplates([{ path: '/a', template: 'ok' }, { path: '/etc/app.conf', template: 'a\nport={{env.PORT}}' }], ctx()));
    expect(err.message).toBe('config template /etc/app.conf, line 2, column 8: "{{env.PORT}}" — "PORT" is not defined in env; available: CLIENT_PORT, TICK. '
      + 'Give it a default in the product\'s defaults.env, or write {{default env.PORT "value"}}');
    expect(err.extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'configTemplates[1].template', line: 2, column: 8 });
  });
});

describe('checkTemplates', () => {
  test('accepts valid templates, including optional env guarded by if', () => {
    expect(() => checkTemplates([
      { path: '/etc/redis.conf', template: 'port {{env.PORT}}\n{{#if env.PASSWORD}}requirepass {{env.PASSWORD}}{{/if}}\n' },
      { path: '/etc/peers', template: '{{#each peers}}{{domainName}} {{../release.name}} {{@root.product.name}} {{@index}}\n{{/each}}' },
      { path: '/etc/with', template: '{{#with release}}{{name}}-{{version}}{{/with}} {{lookup env "PORT"}} {{#each env}}{{@key}}={{this}}{{/each}}' },
      { path: '/etc/sections', template: '{{#peers}}{{domainName}},{{/peers}}{{^peers}}none{{/peers}}{{!-- {{not.checked}} --}} \\{{literal}}' },
    ], { product: 'redis', env: [{ name: 'PORT', value: '6379' }] })).not.toThrow();
  });

  test('a misspelled top-level variable names the line, column, expression and what is available', () => {
    const err = check('# redis\nbind 0.0.0.0\nname {{relase.name}}\n');
    expect(err.message).toBe('config template /etc/redis.conf, line 3, column 8: "{{relase.name}}" — "relase" is not defined; '
      + 'available: product, release, instance, peers, env');
    expect(err.extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'configTemplates[1].template', line: 3, column: 8 });
  });

  test('a misspelled field lists the fields of its object', () => {
    expect(check('a\n  x={{release.nmae}}').message)
      .toBe('config template /etc/redis.conf, line 2, column 7: "{{release.nmae}}" — "nmae" is not defined on release; available: id, name, version, replicas');
  });

  test('inside each, a misspelled field of the item is found', () => {
    const err = check('{{#each peers}}\nserver.{{number}}={{domianName}}\n{{/each}}');
    expect(err.message).toContain('line 2, column 21: "{{domianName}}" — "domianName" is not defined on an item of peers; available: id, ordinal, number, domainName');
  });

  test('a misspelled list in #each is caught although Handlebars would render nothing', () => {
    expect(check('x\n{{#each peer}}{{domainName}}{{/each}}').message).toContain('line 2, column 9: "{{#each peer}}" — "peer" is not defined');
  });

  test('an env variable without a default is caught', () => {
    const err = check('requirepass {{env.PASSWORD}}');
    expect(err.message).toContain('line 1, column 15: "{{env.PASSWORD}}" — "PASSWORD" is not defined in env; available: PORT');
  });

  test('unknown helpers, partials and whole lists are refused', () => {
    expect(check('x\n{{joni peers ","}}').message).toContain('line 2, column 3: "{{joni peers ","}}" — "joni" is not a helper; available helpers: join');
    expect(check('{{> common}}').message).toContain('partials');
    expect(check('{{peers}}').message).toContain('"peers" is a list, not a single value');
  });

  test('a helper failing at render time names its line', () => {
    const err = check('a\nb\nservers={{join peers ","}}');
    expect(err.message).toBe('config template /etc/redis.conf, line 3, column 9: join expects a list of values, not of objects: '
      + 'pick a field first, e.g. {{join (pluck peers "domainName") ","}}');
  });

  test('a parse error names the line and column of the offending token', () => {
    const err = check('bind 0.0.0.0\nport {{ env.PORT } }}\n');
    expect(err.message).toBe('config template /etc/redis.conf, line 2, column 18: syntax error: unexpected "}" (near "port {{ env.PORT } }}")');
    expect(err.extensions).toEqual({ code: 'BAD_USER_INPUT', field: 'configTemplates[1].template', line: 2, column: 18 });
    expect(check('a\nb {{#if x}}\n {{else}} {{else}}{{/if}}').message).toMatch(/^config template \/etc\/redis\.conf, line 3, column 11: syntax error: \{\{else\}\} is not allowed here/);
  });

  test('a template that ends too early points at the unclosed tag or block', () => {
    expect(check('a\nport {{ env.PORT\n').message).toBe('config template /etc/redis.conf, line 2, column 6: syntax error: "{{ env.PORT" is not closed with }}');
    expect(check('a\n  {{#each peers}}\n{{#if @first}}x{{/if}}{{domainName}}').message)
      .toBe('config template /etc/redis.conf, line 2, column 3: syntax error: {{#each}} is never closed with {{/each}}');
  });

  test('a mismatched close names the line of the block', () => {
    expect(check('a\n{{#each peers}}{{/if}}').message).toMatch(/^config template \/etc\/redis\.conf, line 2, column \d+: syntax error: the \{\{#each\}\} block is closed by \{\{\/if\}\}$/);
  });

  test('paths must be absolute, plain and unique', () => {
    expect(check('x', 'etc/x').extensions.field).toBe('configTemplates[1].path');
    expect(check('x', '/etc/../x').extensions.field).toBe('configTemplates[1].path');
    expect(check('x', '/etc/a b').extensions.field).toBe('configTemplates[1].path');
    expect(check('x', '/etc/ok.conf').message).toBe('configTemplates lists the path /etc/ok.conf twice');
  });

  test('ip is known to the check: instance.ip and the peers\' ip pass, a misspelling lists ip among the fields', () => {
    expect(() => checkTemplates([{ path: '/etc/peers', template: '{{instance.ip}} {{#each peers}}{{ip}}{{/each}} {{join (pluck peers "ip") ","}}' }])).not.toThrow();
    expect(check('{{#each peers}}{{ipp}}{{/each}}').message).toBe('config template /etc/redis.conf, line 1, column 18: "{{ipp}}" — "ipp" is not defined on an item of peers; '
      + 'available: id, ordinal, number, domainName, ip');
  });

  test('the sample context has three peers with documentation-range addresses and the default env; unplaced, none', () => {
    const sample = sampleContext({ product: 'redis', env: [{ name: 'PORT', value: '6379' }] });
    expect(sample.peers.map((p) => p.ip)).toEqual(['192.0.2.10', '192.0.2.11', '192.0.2.12']);
    expect(sample.instance.ip).toBe('192.0.2.10');
    expect(sampleContext({}, false).peers.map((p) => p.ip)).toEqual([null, null, null]);
    expect(sample.peers).toHaveLength(3);
    expect(sample.env).toEqual({ PORT: '6379' });
    expect(sample.release.replicas).toBe(3);
  });
});

describe('secrets in templates', () => {
  const template = [{ path: '/etc/app.conf', template: 'user=app\npassword={{secret "DB_PASSWORD"}}\n' }];

  test('{{secret "NAME"}} renders a token, never a value; fillSecrets puts the value in its place', () => {
    const [file] = renderTemplates(template, ctx(), ['DB_PASSWORD']);
    expect(file.content).toBe('user=app\npassword=⟦secret:DB_PASSWORD⟧\n');
    expect(secretsIn(file.content)).toEqual(['DB_PASSWORD']);
    expect(fillSecrets(file.content, new Map([['DB_PASSWORD', 's3cr$t&\\1']]))).toBe('user=app\npassword=s3cr$t&\\1\n');
    expect(() => fillSecrets(file.content, new Map())).toThrow('a config file uses the secret DB_PASSWORD, which the release does not have');
  });

  test('a release without the secret is refused with what to do; a product is checked without knowing its releases', () => {
    const err = errorOf(() => renderTemplates(template, ctx(), ['OTHER']));
    expect(err.message).toBe('config template /etc/app.conf, line 2, column 10: the secret DB_PASSWORD is not among the release\'s secrets (OTHER): deploy it with secretEnv DB_PASSWORD, or give the product a default secret DB_PASSWORD');
    expect(err.extensions.code).toBe('BAD_USER_INPUT');
    expect(() => checkTemplates(template, { product: 'app' })).not.toThrow();
    expect(check('{{secret env.PORT}}').message).toMatch(/secret expects one secret name in quotes, e\.g\. \{\{secret "DB_PASSWORD"\}\}/);
    expect(check('{{secret "NOT-A-NAME"}}').message).toMatch(/secret expects one secret name in quotes/);
  });
});
