/**
 * Message Markdown: `marked` turns it into HTML, DOMPurify cleans that HTML, and only the
 * cleaned result is set on the page. This is the only component of the app that sets HTML.
 *
 * Raw HTML written in the Markdown is shown as text (a model explaining `<div>` means the
 * words), except a few harmless inline tags models like to use (`<br>` in table cells,
 * `<sup>`, `<kbd>`); those pass through DOMPurify like everything else.
 */
import DOMPurify from 'dompurify';
import { Marked } from 'marked';
import { useLayoutEffect, useMemo, useRef } from 'preact/hooks';

const purify = DOMPurify(window);

// Every link opens in a new tab, without the opener or a referrer.
purify.addHook('afterSanitizeAttributes', (node) => {
  if (node.nodeName === 'A') {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer');
  }
});

const PURIFY_CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: [
    'style',
    'form',
    'input',
    'button',
    'textarea',
    'select',
    'option',
    'iframe',
    'frame',
    'frameset',
    'object',
    'embed',
    'img',
    'video',
    'audio',
    'source',
    'picture',
    'link',
    'meta',
    'base',
    'svg',
    'math',
  ],
  FORBID_ATTR: ['style', 'class', 'id', 'srcset', 'formaction', 'action'],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
};

const SAFE_INLINE_TAG = /^<\/?(br|sub|sup|kbd|b|i|em|strong|u|s|del|ins|mark|small)\s*\/?>$/i;

function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    html(token) {
      const text = token.text;
      if (SAFE_INLINE_TAG.test(text.trim())) return text.trim();
      if ('block' in token && token.block) {
        return `<p>${escapeHtml(text.trim()).replace(/\n/g, '<br>')}</p>\n`;
      }
      return escapeHtml(text);
    },
    // Task lists: a symbol, not a form control.
    checkbox({ checked }) {
      return checked ? '☑ ' : '☐ ';
    },
    // Remote images would be blocked by the page's policy anyway: show a link instead.
    image({ href, text }) {
      const label = escapeHtml(text || href);
      if (!/^https?:\/\//i.test(href)) return label;
      return `<a href="${escapeHtml(href)}">${label}</a>`;
    },
    code({ text, lang }) {
      const language = (lang ?? '').match(/^[\w+#.-]+/)?.[0] ?? '';
      const attribute = language ? ` data-lang="${escapeHtml(language)}"` : '';
      return `<pre${attribute}><code>${escapeHtml(text.replace(/\n$/, ''))}</code></pre>\n`;
    },
  },
});

/** Markdown to sanitized HTML. */
export function renderMarkdown(source: string): string {
  const html = marked.parse(source, { async: false });
  return purify.sanitize(html, { ...PURIFY_CONFIG, ADD_ATTR: ['data-lang'] });
}

function selectContents(element: Element): void {
  const selection = window.getSelection();
  if (!selection) return;
  const range = document.createRange();
  range.selectNodeContents(element);
  selection.removeAllRanges();
  selection.addRange(range);
}

/** Copies `text`; falls back to selecting `element` and the old copy command (plain http). */
export async function copyText(text: string, element?: Element): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // Refused (permissions, focus): try the fallback.
  }
  if (!element) return false;
  selectContents(element);
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  }
}

function flash(button: HTMLButtonElement, label: string): void {
  button.textContent = label;
  window.setTimeout(() => {
    if (button.isConnected) button.textContent = 'Copy';
  }, 1500);
}

/** Adds a language label and a Copy button to every `pre > code` under `root`. */
function decorateCodeBlocks(root: HTMLElement): void {
  for (const pre of root.querySelectorAll('pre')) {
    const code = pre.querySelector('code');
    if (!code || pre.parentElement?.classList.contains('code-block')) continue;
    const wrapper = document.createElement('div');
    wrapper.className = 'code-block';
    const bar = document.createElement('div');
    bar.className = 'code-block__bar';
    const language = document.createElement('span');
    language.className = 'code-block__lang';
    language.textContent = pre.dataset.lang ?? '';
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'code-block__copy';
    button.textContent = 'Copy';
    button.addEventListener('click', () => {
      void copyText(code.textContent ?? '', code).then((copied) =>
        flash(button, copied ? 'Copied' : 'Press Ctrl+C'),
      );
    });
    bar.append(language, button);
    pre.replaceWith(wrapper);
    wrapper.append(bar, pre);
  }
}

export function Markdown(props: { text: string; class?: string }) {
  const html = useMemo(() => renderMarkdown(props.text), [props.text]);
  const ref = useRef<HTMLDivElement>(null);
  useLayoutEffect(() => {
    if (ref.current) decorateCodeBlocks(ref.current);
  }, [html]);
  return (
    <div
      ref={ref}
      class={props.class ? `markdown ${props.class}` : 'markdown'}
      // The only HTML the app sets: marked's output after DOMPurify.
      dangerouslySetInnerHTML={{ __html: html }}
    />
  );
}
