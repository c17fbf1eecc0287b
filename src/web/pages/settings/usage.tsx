import type { JSX } from 'preact';
import { api } from '../../api.js';
import { Feedback, Loading, Section, useLoad } from './ui.js';

const COUNT = new Intl.NumberFormat();

/** What this account's chats have used so far, deleted conversations included. */
export function UsageSection(): JSX.Element {
  const usage = useLoad(() => api.usage());
  const data = usage.data;
  return (
    <Section
      id="st-usage"
      title="Usage"
      intro="Tokens the models reported for your chats, kept when a conversation is deleted."
    >
      {data === undefined ? (
        usage.error ? (
          <Feedback error={usage.error} />
        ) : (
          <Loading what="usage" />
        )
      ) : (
        <dl class="st-usage" data-testid="usage">
          <dt>Messages</dt>
          <dd>{COUNT.format(data.messages)}</dd>
          <dt>Prompt tokens</dt>
          <dd>{COUNT.format(data.prompt_tokens)}</dd>
          <dt>Answer tokens</dt>
          <dd>{COUNT.format(data.completion_tokens)}</dd>
        </dl>
      )}
    </Section>
  );
}
