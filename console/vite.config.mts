import { defineConfig } from 'vite';

/** Built into console/dist, served by the gateway at /console on the API's origin (gateway/console.ts). */
export default defineConfig({
  base: '/console/',
  build: { outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 1024 },
  oxc: { jsx: { runtime: 'automatic' } },
});
