import type { Conversation, Me } from '../../api.js';
import { Brand, ErrorText } from '../../components/common.js';
import { Link } from '../../components/link.js';
import { conversationPath, navigate, type Route } from '../../router.js';

export function conversationTitle(conversation: Pick<Conversation, 'title'> | null): string {
  return conversation?.title.trim() || 'Untitled';
}

interface Group {
  label: string;
  items: Conversation[];
}

/** Today, Yesterday, Previous 7 days, Previous 30 days, then by month; newest first. */
function groupByAge(conversations: Conversation[], now = new Date()): Group[] {
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const day = 86_400_000;
  const groups = new Map<string, Conversation[]>();
  for (const conversation of conversations) {
    const at = new Date(conversation.updated_at);
    const time = at.getTime();
    let label: string;
    if (Number.isNaN(time) || time >= startOfToday) label = 'Today';
    else if (time >= startOfToday - day) label = 'Yesterday';
    else if (time >= startOfToday - 7 * day) label = 'Previous 7 days';
    else if (time >= startOfToday - 30 * day) label = 'Previous 30 days';
    else label = at.toLocaleDateString(undefined, { year: 'numeric', month: 'long' });
    const items = groups.get(label);
    if (items) items.push(conversation);
    else groups.set(label, [conversation]);
  }
  return [...groups].map(([label, items]) => ({ label, items }));
}

export function Sidebar(props: {
  id: string;
  me: Me;
  canSignOut: boolean;
  conversations: Conversation[] | null;
  error: string | null;
  query: string;
  onQuery: (query: string) => void;
  activeId: string | null;
  route: Route;
  onSignOut: () => Promise<void>;
  /** A link or button of the sidebar was used (the drawer closes on narrow screens). */
  onNavigate: () => void;
}) {
  const { me, conversations, query } = props;
  const searching = query.trim() !== '';
  return (
    <aside
      class="sidebar"
      id={props.id}
      aria-label="Conversations and account"
      onClick={(event) => {
        if ((event.target as Element).closest('a, .sidebar__new')) props.onNavigate();
      }}
    >
      <div class="sidebar__head">
        <Link href="/" class="sidebar__brand">
          <Brand />
        </Link>
        <button type="button" class="btn btn-primary sidebar__new" onClick={() => navigate('/')}>
          New chat
        </button>
      </div>
      <div class="sidebar__search">
        <label for="conversation-search" class="sr-only">
          Search conversations
        </label>
        <input
          id="conversation-search"
          class="input"
          type="search"
          placeholder="Search conversations"
          autocomplete="off"
          value={query}
          onInput={(event) => props.onQuery(event.currentTarget.value)}
        />
      </div>
      <nav class="sidebar__list" aria-label="Conversations" data-testid="conversations">
        <ErrorText message={props.error} />
        {conversations === null && !props.error && <p class="sidebar__empty muted">Loading…</p>}
        {conversations?.length === 0 && (
          <p class="sidebar__empty muted">
            {searching ? 'No conversation matches.' : 'No conversations yet.'}
          </p>
        )}
        {conversations &&
          groupByAge(conversations).map((group) => (
            <section class="sidebar__group" key={group.label}>
              <h2 class="sidebar__group-label">{group.label}</h2>
              <ul class="sidebar__items">
                {group.items.map((conversation) => {
                  const active = conversation.id === props.activeId;
                  return (
                    <li key={conversation.id}>
                      <Link
                        href={conversationPath(conversation.id)}
                        class={active ? 'sidebar__item sidebar__item--active' : 'sidebar__item'}
                        aria-current={active ? 'page' : undefined}
                        title={conversationTitle(conversation)}
                        data-testid="conversation"
                        data-id={conversation.id}
                      >
                        {conversationTitle(conversation)}
                      </Link>
                    </li>
                  );
                })}
              </ul>
            </section>
          ))}
      </nav>
      <div class="sidebar__foot">
        <div class="sidebar__user">
          <span class="avatar" aria-hidden="true">
            {me.username.slice(0, 1).toUpperCase()}
          </span>
          <span class="sidebar__username" title={me.username} data-testid="username">
            {me.username}
          </span>
          {me.role === 'admin' && <span class="badge">admin</span>}
        </div>
        <div class="sidebar__links">
          <Link
            href="/settings"
            class="btn btn-ghost btn-sm"
            aria-current={props.route.name === 'settings' ? 'page' : undefined}
          >
            Settings
          </Link>
          {me.role === 'admin' && (
            <Link
              href="/admin"
              class="btn btn-ghost btn-sm"
              aria-current={props.route.name === 'admin' ? 'page' : undefined}
            >
              Admin
            </Link>
          )}
          {props.canSignOut && (
            <button
              type="button"
              class="btn btn-ghost btn-sm"
              onClick={() => void props.onSignOut()}
            >
              Sign out
            </button>
          )}
        </div>
      </div>
    </aside>
  );
}
