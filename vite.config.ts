import preact from '@preact/preset-vite';
import { defineConfig } from 'vite';

// The web app: src/web built into dist/web, served by Palisade at `/`. Hashed file names under
// /assets are cached for a year; nothing is inlined, so the strict CSP needs no exceptions.
export default defineConfig({
  root: 'src/web',
  base: '/',
  plugins: [preact()],
  build: {
    outDir: '../../dist/web',
    emptyOutDir: true,
    assetsDir: 'assets',
    assetsInlineLimit: 0,
    sourcemap: false,
    modulePreload: { polyfill: false },
  },
});
