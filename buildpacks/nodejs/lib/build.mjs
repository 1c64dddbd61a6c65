// node build.mjs APP_DIR ENTRY OUT.wasm
import { builtinModules } from 'node:module';
import { writeFile, readFile, rm, mkdir, readdir } from 'node:fs/promises';
import { join, resolve, relative, dirname, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { componentize } from '@bytecodealliance/componentize-js';

const here = dirname(fileURLToPath(import.meta.url));
const [appDir, entry, outWasm] = process.argv.slice(2).map((p) => resolve(p));
const cjsDir = dirname(fileURLToPath(import.meta.resolve('@bytecodealliance/componentize-js')));

// The wasi 0.2.x version StarlingMonkey's engine is built against: the world must export exactly its
// incoming-handler. The WIT comes from jco's copy of WASI 0.2 with that version put in.
const engine = new WebAssembly.Module(await readFile(join(cjsDir, '../lib/starlingmonkey_embedding.wasm')));
const handler = WebAssembly.Module.exports(engine).map((e) => e.name).find((n) => n.startsWith('wasi:http/incoming-handler@'));
const wasi = handler.split('@')[1].split('#')[0];
const witDir = join(here, `wit-${wasi}`);
const jcoWit = join(dirname(fileURLToPath(import.meta.resolve('@bytecodealliance/jco'))), '../lib/wit/builtin');
const source = (await readdir(jcoWit)).filter((d) => /^0\.2\.\d+$/.test(d)).sort((a, b) => a.split('.')[2] - b.split('.')[2]).pop();
await rm(witDir, { recursive: true, force: true });
for (const pkg of ['cli', 'clocks', 'filesystem', 'http', 'io', 'random', 'sockets']) {
  const text = await readFile(join(jcoWit, source, `wasi-${pkg}`, 'package.wit'), 'utf8');
  await mkdir(join(witDir, 'deps', pkg), { recursive: true });
  await writeFile(join(witDir, 'deps', pkg, 'package.wit'), text.replaceAll(`@${source}`, `@${wasi}`));
}
await writeFile(join(witDir, 'world.wit'),
  `package wasmdyno:app;\n\nworld app {\n  include wasi:http/proxy@${wasi};\n  import wasi:cli/environment@${wasi};\n}\n`);
const adapter = join(here, `adapter-${wasi}.js`);
await writeFile(adapter, (await readFile(join(here, 'adapter.js'), 'utf8')).replaceAll('@@WASI@', `@${wasi}`));

const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const nodeBuiltins = {
  name: 'wasmdyno',
  setup(build) {
    build.onResolve({ filter: /^wasi:/ }, (args) => ({ path: args.path, external: true }));
    build.onResolve({ filter: /.*/ }, (args) => {
      if (!builtins.has(args.path) && !args.path.startsWith('node:')) return undefined;
      const name = args.path.replace(/^node:/, '');
      if (args.kind === 'require-call') {
        // require() may sit in a try/catch (an optional feature): it throws if it runs, and the build goes on.
        return {
          path: name,
          namespace: 'wasmdyno-missing',
          warnings: [{ text: `require("${args.path}"): wasmdyno has no node:${name}; this require() throws if it runs` }],
        };
      }
      return {
        errors: [{
          text: `"${args.path}" is a Node.js built-in module: wasmdyno runs JavaScript on StarlingMonkey, which has web APIs (fetch, Request, Response, URL, crypto, TextEncoder, streams, timers) but no node:${name}`,
        }],
      };
    });
    build.onLoad({ filter: /.*/, namespace: 'wasmdyno-missing' }, (args) => ({
      contents: `throw new Error(${JSON.stringify(`node:${args.path} is not available on wasmdyno (StarlingMonkey has web APIs, not Node.js built-in modules)`)});`,
      loader: 'js',
    }));
  },
};

const started = Date.now();
const wrapper = join(appDir, '.wasmdyno-entry.mjs');
await writeFile(wrapper,
  `import { serve } from ${JSON.stringify(adapter)};\n` +
  `import * as app from ${JSON.stringify('./' + relative(appDir, entry))};\n` +
  `export const incomingHandler = serve(app);\n`);
// The bundle stays beside the component: errors name its lines (StarlingMonkey has no source maps).
const bundle = outWasm.replace(/\.wasm$/, '') + '.js';
let ok = true;
await esbuild.build({
  entryPoints: [wrapper],
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  mainFields: ['browser', 'module', 'main'],
  conditions: ['workerd', 'worker', 'browser'],
  resolveExtensions: ['.ts', '.tsx', '.mts', '.js', '.mjs', '.cjs', '.jsx', '.json'],
  define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis' },
  plugins: [nodeBuiltins],
  outfile: bundle,
  logLevel: 'warning',
  absWorkingDir: appDir,
}).catch(() => { ok = false; }); // esbuild has printed the errors, with file and line
await rm(wrapper);
if (!ok) process.exit(1);
const bundled = Date.now();
console.log(`${basename(bundle)}: ${(await readFile(bundle)).length} bytes, bundled in ${bundled - started} ms`);

process.chdir(dirname(outWasm)); // ComponentizeJS names the script relative to the working directory
let component;
try {
  // Wizer runs with only the environment given here: without XDG_CACHE_HOME it makes wasmtime's cache under the
  // user's home directory, which the build sandbox mounts read-only (bin/compile points it into the build cache).
  const env = { XDG_CACHE_HOME: process.env.XDG_CACHE_HOME };
  ({ component } = await componentize({ sourcePath: bundle, witPath: witDir, worldName: 'app', env }));
} catch (e) {
  // Top-level code runs at build time (Wizer pre-initialization): its exceptions end up here.
  console.error(String((e && e.message) || e));
  process.exit(1);
}
await writeFile(outWasm, component);
console.log(`${basename(outWasm)}: ${component.length} bytes (wasi:http/proxy@${wasi} component) in ${Date.now() - bundled} ms`);
