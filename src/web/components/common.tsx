import type { ComponentChildren } from 'preact';
import { useEffect } from 'preact/hooks';

/** Sets the tab's title while the calling component is shown. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · Palisade` : 'Palisade';
  }, [title]);
}

export function Brand() {
  return (
    <span class="brand">
      <img class="brand__logo" src="/favicon.svg" alt="" width={24} height={24} />
      <span class="brand__name">Palisade</span>
    </span>
  );
}

/** A visible error for screen readers too; renders nothing without a message. */
export function ErrorText(props: { message: string | null | undefined; id?: string }) {
  if (!props.message) return null;
  return (
    <p class="error" role="alert" id={props.id}>
      {props.message}
    </p>
  );
}

/** A centred card for the pages shown before sign-in (setup, login) and for app-wide states. */
export function CenteredCard(props: { title: string; children: ComponentChildren }) {
  return (
    <main class="centered">
      <div class="card centered__card">
        <div class="centered__brand">
          <Brand />
        </div>
        <h1 class="centered__title">{props.title}</h1>
        {props.children}
      </div>
    </main>
  );
}
