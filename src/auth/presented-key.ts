/**
 * The API key a client presented: `Authorization: Bearer <key>` (OpenAI clients) or
 * `x-api-key: <key>` (Anthropic clients). Undefined when neither is there.
 */
export function readPresentedKey(
  headers: Record<string, string | string[] | undefined>,
): string | undefined {
  const authorization = headers.authorization;
  if (typeof authorization === 'string') {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (match) return match[1];
  }
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey.trim() !== '') return apiKey.trim();
  return undefined;
}
