import type { Finding, Inspection } from './inspection';

/** The inspection as a document: Markdown for chat and tickets, HTML (self-contained, escaped) for mail and files. */
const counts = (findings: Finding[]) => ({
  critical: findings.filter((f) => f.severity === 'CRITICAL').length,
  warning: findings.filter((f) => f.severity === 'WARNING').length,
  info: findings.filter((f) => f.severity === 'INFO').length,
});
export const findingCounts = (i: Pick<Inspection, 'findings'>) => counts(i.findings);

const summary = (i: Inspection) => {
  const c = counts(i.findings);
  return `Score ${i.score}/100 · ${c.critical} critical · ${c.warning} warnings · ${c.info} notes`;
};

const mdCell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function reportMarkdown(i: Inspection): string {
  const lines = [`# Fangzhou inspection ${i.startedAt}`, '', `${summary(i)} (${i.trigger.toLowerCase().replace('_', ' ')})`, ''];
  if (i.findings.length === 0) return [...lines, 'Every check passed.', ''].join('\n');
  lines.push('| severity | check | subject | finding |', '|---|---|---|---|');
  for (const f of i.findings) lines.push(`| ${f.severity} | ${f.check} | ${mdCell(f.subject)} | ${mdCell(f.message)} |`);
  return [...lines, ''].join('\n');
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const COLOURS = { CRITICAL: '#fdeeee', WARNING: '#fff7e8', INFO: '#ffffff' };

export function reportHtml(i: Inspection): string {
  const rows = i.findings.map((f) =>
    `<tr style="background:${COLOURS[f.severity]}"><td>${f.severity}</td><td>${esc(f.check)}</td><td>${esc(f.subject)}</td><td>${esc(f.message)}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fangzhou inspection ${esc(i.startedAt)}</title></head>
<body style="font-family:system-ui,sans-serif">
<h1>Fangzhou inspection ${esc(i.startedAt)}</h1>
<p>${esc(summary(i))}</p>
${i.findings.length === 0 ? '<p>Every check passed.</p>' : `<table border="1" cellpadding="4" style="border-collapse:collapse">
<thead><tr><th>severity</th><th>check</th><th>subject</th><th>finding</th></tr></thead>
<tbody>
${rows}
</tbody></table>`}
</body></html>
`;
}
