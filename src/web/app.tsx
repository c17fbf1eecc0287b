import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { api, onUnauthorized, type AuthState, type Conversation, type Me } from './api.js';
import { Brand, CenteredCard, useTitle } from './components/common.js';
import { errorMessage } from './components/errors.js';
import { Link } from './components/link.js';
import { AdminPage } from './pages/admin.js';
import { ChatPage } from './pages/chat.js';
import { Sidebar } from './pages/chat/sidebar.js';
import { LoginPage } from './pages/login.js';
import { SettingsPage } from './pages/settings.js';
import { SetupPage } from './pages/setup.js';
import { navigate, parseRoute, usePath, type Route } from './router.js';

type Loaded =
  | { status: 'loading' }
  | { status: 'failed'; message: string }
  | { status: 'ready'; auth: AuthState };

type View = 'setup' | 'login' | 'enroll' | 'app' | 'broken';

function viewOf(auth: AuthState): View {
  if (auth.setup_required) return 'setup';
  if (!auth.user) return auth.auth ? 'login' : 'broken';
  if (auth.user.totp_enrollment_required) return 'enroll';
  return 'app';
}

export function App() {
  const path = usePath();
  const route = parseRoute(path);
  const [state, setState] = useState<Loaded>({ status: 'loading' });
  /** Where to go after signing in: the page that asked for it. */
  const returnTo = useRef<string | null>(null);

  const load = useCallback(async () => {
    try {
      const auth = await api.authState();
      setState({ status: 'ready', auth });
    } catch (error) {
      setState((previous) =>
        // A failed refresh keeps the app on screen; only the first load shows the failure.
        previous.status === 'ready' ? previous : { status: 'failed', message: errorMessage(error) },
      );
    }
  }, []);

  useEffect(() => {
    void load();
  }, [load]);

  // A 401 from any page means the session ended: ask the server where we stand.
  useEffect(() => {
    onUnauthorized(() => void load());
    return () => onUnauthorized(undefined);
  }, [load]);

  const view = state.status === 'ready' ? viewOf(state.auth) : null;

  useEffect(() => {
    if (view === 'setup' && route.name !== 'setup') {
      navigate('/setup', { replace: true });
    } else if (view === 'login' && route.name !== 'login') {
      if (route.name !== 'setup') returnTo.current = location.pathname;
      navigate('/login', { replace: true });
    } else if (
      (view === 'app' || view === 'enroll') &&
      (route.name === 'login' || route.name === 'setup')
    ) {
      const target = returnTo.current ?? '/';
      returnTo.current = null;
      navigate(target, { replace: true });
    }
  }, [view, route.name]);

  const signedIn = useCallback((user: Me) => {
    setState((previous) =>
      previous.status === 'ready'
        ? { status: 'ready', auth: { ...previous.auth, setup_required: false, user } }
        : previous,
    );
  }, []);

  const signOut = useCallback(async () => {
    try {
      await api.logout();
    } catch {
      // Whatever happened, the server's answer below says whether we are still signed in.
    }
    returnTo.current = null;
    navigate('/login');
    await load();
  }, [load]);

  if (state.status === 'loading') {
    return (
      <main class="centered" aria-busy="true">
        <p class="muted">Loading…</p>
      </main>
    );
  }
  if (state.status === 'failed') {
    return (
      <CenteredCard title="Palisade is not answering">
        <p class="error" role="alert">
          {state.message}
        </p>
        <button type="button" class="btn btn-primary" onClick={() => void load()}>
          Retry
        </button>
      </CenteredCard>
    );
  }

  const { auth } = state;
  switch (view) {
    case 'setup':
      return <SetupPage tokenRequired={auth.setup_token_required} onSignedIn={signedIn} />;
    case 'login':
      return <LoginPage onSignedIn={signedIn} />;
    case 'enroll':
      return (
        <EnrollmentGate
          me={auth.user as Me}
          canSignOut={auth.auth}
          onMeChange={signedIn}
          onSignOut={signOut}
        />
      );
    case 'app':
      return (
        <Shell
          me={auth.user as Me}
          canSignOut={auth.auth}
          route={route}
          path={path}
          onMeChange={signedIn}
          onSignOut={signOut}
        />
      );
    default:
      return (
        <CenteredCard title="No local user">
          <p class="error" role="alert">
            Palisade runs without accounts but has no local user. Restart the server.
          </p>
        </CenteredCard>
      );
  }
}

/** An admin requires two-factor sign-in and this user has not set it up: nothing else is open. */
function EnrollmentGate(props: {
  me: Me;
  canSignOut: boolean;
  onMeChange: (me: Me) => void;
  onSignOut: () => Promise<void>;
}) {
  useTitle('Set up two-factor sign-in');
  return (
    <div class="gate">
      <header class="gate__bar">
        <Brand />
        <span class="gate__user">
          <span class="muted">{props.me.username}</span>
          {props.canSignOut && (
            <button type="button" class="btn btn-sm" onClick={() => void props.onSignOut()}>
              Sign out
            </button>
          )}
        </span>
      </header>
      <main class="page-scroll">
        <div class="page">
          {/* The page itself says that an administrator requires two-factor sign-in. */}
          <SettingsPage me={props.me} onMeChange={props.onMeChange} focus="totp" />
        </div>
      </main>
    </div>
  );
}

function byNewest(a: Conversation, b: Conversation): number {
  return b.updated_at.localeCompare(a.updated_at);
}

/** The signed-in app: the sidebar (conversations, account) and the page beside it. */
function Shell(props: {
  me: Me;
  canSignOut: boolean;
  route: Route;
  path: string;
  onMeChange: (me: Me) => void;
  onSignOut: () => Promise<void>;
}) {
  const { me, route } = props;
  const [drawerOpen, setDrawerOpen] = useState(false);
  const [conversations, setConversations] = useState<Conversation[] | null>(null);
  const [listError, setListError] = useState<string | null>(null);
  const [query, setQuery] = useState('');
  const [version, setVersion] = useState(0);
  const lastQuery = useRef(query);
  const sequence = useRef(0);

  const refresh = useCallback(() => setVersion((v) => v + 1), []);

  // The conversation list: at once on a refresh, debounced while typing a search.
  useEffect(() => {
    const delay = lastQuery.current === query ? 0 : 250;
    lastQuery.current = query;
    const mine = ++sequence.current;
    const timer = window.setTimeout(() => {
      api.conversations(query.trim() || undefined).then(
        (answer) => {
          if (mine !== sequence.current) return;
          setConversations([...answer.conversations].sort(byNewest));
          setListError(null);
        },
        (error: unknown) => {
          if (mine === sequence.current) setListError(errorMessage(error));
        },
      );
    }, delay);
    return () => window.clearTimeout(timer);
  }, [query, version]);

  // The drawer (narrow screens) closes on navigation and on Escape.
  useEffect(() => setDrawerOpen(false), [props.path]);
  useEffect(() => {
    if (!drawerOpen) return;
    const onKey = (event: KeyboardEvent) => {
      if (event.key === 'Escape') setDrawerOpen(false);
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [drawerOpen]);

  const activeId = route.name === 'chat' ? route.id : null;
  const activeTitle =
    route.name === 'settings'
      ? 'Settings'
      : route.name === 'admin'
        ? 'Admin'
        : (conversations?.find((c) => c.id === activeId)?.title ?? '');

  let content;
  switch (route.name) {
    case 'chat':
      content = <ChatPage me={me} conversationId={route.id} onConversationsChanged={refresh} />;
      break;
    case 'settings':
      content = (
        <div class="page-scroll">
          <div class="page">
            <SettingsPage me={me} onMeChange={props.onMeChange} />
          </div>
        </div>
      );
      break;
    case 'admin':
      content =
        me.role === 'admin' ? (
          <div class="page-scroll">
            <div class="page page--wide">
              <AdminPage me={me} />
            </div>
          </div>
        ) : (
          <NotFound />
        );
      break;
    case 'not_found':
      content = <NotFound />;
      break;
    default:
      // /login or /setup while signed in: the redirect to the chat is on its way.
      content = null;
  }

  return (
    <div class={drawerOpen ? 'shell shell--drawer-open' : 'shell'}>
      <header class="topbar">
        <button
          type="button"
          class="btn btn-ghost btn-icon"
          aria-label="Menu"
          aria-controls="sidebar"
          aria-expanded={drawerOpen}
          onClick={() => setDrawerOpen((open) => !open)}
        >
          <MenuIcon />
        </button>
        <span class="topbar__title">{activeTitle || 'Palisade'}</span>
        <Link href="/" class="btn btn-ghost btn-icon" aria-label="New conversation">
          <PlusIcon />
        </Link>
      </header>
      <Sidebar
        id="sidebar"
        me={me}
        canSignOut={props.canSignOut}
        conversations={conversations}
        error={listError}
        query={query}
        onQuery={setQuery}
        activeId={activeId}
        route={route}
        onSignOut={props.onSignOut}
        onNavigate={() => setDrawerOpen(false)}
      />
      <div
        class="shell__backdrop"
        aria-hidden="true"
        hidden={!drawerOpen}
        onClick={() => setDrawerOpen(false)}
      />
      <main class="shell__main" id="main">
        {content}
      </main>
    </div>
  );
}

function NotFound() {
  useTitle('Not found');
  return (
    <div class="page-scroll">
      <div class="page">
        <div class="card">
          <h1>Page not found</h1>
          <p class="muted">There is nothing at this address.</p>
          <Link href="/" class="btn btn-primary">
            Back to chat
          </Link>
        </div>
      </div>
    </div>
  );
}

function MenuIcon() {
  return (
    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" class="icon">
      <path d="M4 6h16M4 12h16M4 18h16" fill="none" stroke="currentColor" stroke-width="2" />
    </svg>
  );
}

function PlusIcon() {
  return (
    <svg viewBox="0 0 24 24" width="20" height="20" aria-hidden="true" class="icon">
      <path d="M12 5v14M5 12h14" fill="none" stroke="currentColor" stroke-width="2" />
    </svg>
  );
}
