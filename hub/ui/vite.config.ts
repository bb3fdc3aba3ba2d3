// The duty room's build. `npm run dev` serves it with the hub's API proxied, so the page and
// the API share one origin as they do when the hub serves the built files itself.
import { defineConfig, type ProxyOptions } from 'vite';
import preact from '@preact/preset-vite';

// Node's `process`, declared here so the browser code's types stay free of Node's.
declare const process: { env: Record<string, string | undefined> };

const target = process.env.HUB_URL || 'http://127.0.0.1:18080';

// The hub refuses WebSocket upgrades and event streams whose Origin is not its own host
// (docs/access.md, CSRF), so the proxy presents the target as the origin.
const toHub: ProxyOptions = {
  target,
  changeOrigin: true,
  ws: true,
  configure: (proxy) => {
    proxy.on('proxyReqWs', (req) => req.setHeader('origin', target));
    proxy.on('proxyReq', (req) => req.setHeader('origin', target));
  },
};

export default defineConfig({
  base: '/',
  plugins: [preact()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    target: 'es2020',
    sourcemap: false,
    chunkSizeWarningLimit: 200,
  },
  server: {
    host: '127.0.0.1',
    port: 5173,
    proxy: { '/api': toHub, '/healthz': toHub, '/metrics': toHub },
  },
  preview: {
    proxy: { '/api': toHub, '/healthz': toHub, '/metrics': toHub },
  },
});
