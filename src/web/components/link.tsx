import type { PartialAnchorHTMLAttributes } from 'preact';
import { followLink } from '../router.js';

type LinkProps = Omit<PartialAnchorHTMLAttributes<HTMLAnchorElement>, 'href' | 'role'> & {
  href: string;
};

/** A link to a path of this app: navigates with the history API instead of reloading. */
export function Link(props: LinkProps) {
  const { href, onClick, ...rest } = props;
  return (
    <a
      {...rest}
      href={href}
      onClick={(event) => {
        if (typeof onClick === 'function') onClick(event);
        followLink(event, href);
      }}
    />
  );
}
