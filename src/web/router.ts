/**
 * A tiny history-API router: the app's paths, `navigate()` and a hook that re-renders on every
 * change (links, `navigate()`, the browser's back and forward buttons).
 *
 *   /          a new chat
 *   /c/:id     a conversation
 *   /settings  the user's settings
 *   /admin     the instance's administration (admins only)
 *   /login     sign-in
 *   /setup     the first admin's creation
 */
import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { name: 'chat'; id: string | null }
  | { name: 'settings' }
  | { name: 'admin' }
  | { name: 'login' }
  | { name: 'setup' }
  | { name: 'not_found' };

export function parseRoute(path: string): Route {
  const clean = path.length > 1 ? path.replace(/\/+$/, '') : path;
  if (clean === '/' || clean === '') return { name: 'chat', id: null };
  if (clean === '/settings') return { name: 'settings' };
  if (clean === '/admin') return { name: 'admin' };
  if (clean === '/login') return { name: 'login' };
  if (clean === '/setup') return { name: 'setup' };
  const match = /^\/c\/([^/]+)$/.exec(clean);
  if (match?.[1]) {
    try {
      return { name: 'chat', id: decodeURIComponent(match[1]) };
    } catch {
      return { name: 'not_found' };
    }
  }
  return { name: 'not_found' };
}

export function conversationPath(id: string): string {
  return `/c/${encodeURIComponent(id)}`;
}

const listeners = new Set<() => void>();

function notify(): void {
  for (const listener of listeners) listener();
}

window.addEventListener('popstate', notify);

/** Goes to `to` (a path of this app); `replace` rewrites the current history entry instead. */
export function navigate(to: string, options: { replace?: boolean } = {}): void {
  const current = location.pathname + location.search;
  if (to === current && !options.replace) return;
  if (options.replace) history.replaceState(null, '', to);
  else history.pushState(null, '', to);
  notify();
}

/** The current path; the calling component re-renders when it changes. */
export function usePath(): string {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const listener = () => setPath(location.pathname);
    listeners.add(listener);
    // A navigation between the render and this effect would otherwise be missed.
    listener();
    return () => {
      listeners.delete(listener);
    };
  }, []);
  return path;
}

/**
 * An `onClick` for links to app paths: plain left clicks navigate without reloading the page;
 * clicks with a modifier (new tab, new window) are left to the browser.
 */
export function followLink(event: MouseEvent, href: string): boolean {
  if (
    event.defaultPrevented ||
    event.button !== 0 ||
    event.metaKey ||
    event.ctrlKey ||
    event.shiftKey ||
    event.altKey
  ) {
    return false;
  }
  event.preventDefault();
  navigate(href);
  return true;
}
