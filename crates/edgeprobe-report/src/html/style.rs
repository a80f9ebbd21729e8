//! The page's only styling, inline: no font, image or stylesheet is fetched, and it prints
//! legibly.

pub(super) const STYLE: &str = r#"
:root {
  --ink: #1b1f24; --muted: #5b6570; --line: #d8dee4; --panel: #ffffff; --page: #f3f5f7;
  --ok: #1a7f37; --ok-bg: #dafbe1; --warn: #9a6700; --warn-bg: #fff3c4;
  --fail: #cf222e; --fail-bg: #ffebe9; --skip: #6e7781; --skip-bg: #eaeef2;
  --accent: #0b5cad;
}
* { box-sizing: border-box; }
html { background: var(--page); }
body { margin: 0; color: var(--ink); font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
.wrap { max-width: 1180px; margin: 0 auto; padding: 0 24px; }
header.top { background: #14212e; color: #fff; padding: 22px 0 20px; }
header.top h1 { margin: 0; font-size: 20px; font-weight: 600; letter-spacing: .2px; }
header.top h1 .ver { color: #9fb3c8; font-weight: 400; font-size: 14px; margin-left: 6px; }
header.top .sub { color: #c9d6e2; margin-top: 2px; }
.ctx { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 6px 24px; margin: 16px 0 0; }
.ctx div { min-width: 0; }
.ctx dt { color: #9fb3c8; font-size: 11px; text-transform: uppercase; letter-spacing: .6px; }
.ctx dd { margin: 0; overflow-wrap: anywhere; }
.notes { margin: 12px 0 0; padding-left: 18px; color: #ffd98a; }
main { padding: 20px 0 40px; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 18px 20px; margin-bottom: 18px; }
h2 { font-size: 16px; margin: 0 0 12px; font-weight: 600; }
.summary { display: flex; flex-wrap: wrap; align-items: center; gap: 10px 18px; }
.verdict-line { font-size: 16px; font-weight: 600; margin-right: auto; }
.verdict-line.bad { color: var(--fail); } .verdict-line.good { color: var(--ok); }
.counts { display: flex; gap: 8px; }
.badge { display: inline-block; min-width: 44px; text-align: center; padding: 1px 8px; border-radius: 999px; font-size: 11.5px; font-weight: 700; letter-spacing: .4px; text-transform: uppercase; }
.badge.pass, .badge.ok, .badge.yes { color: var(--ok); background: var(--ok-bg); }
.badge.warn { color: var(--warn); background: var(--warn-bg); }
.badge.fail, .badge.no { color: var(--fail); background: var(--fail-bg); }
.badge.skip, .badge.untested { color: var(--skip); background: var(--skip-bg); }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-size: 11.5px; text-transform: uppercase; letter-spacing: .5px; color: var(--muted); font-weight: 600; border-bottom: 1px solid var(--line); padding: 6px 10px; }
td { border-bottom: 1px solid #eef1f4; padding: 7px 10px; vertical-align: baseline; }
td.nowrap { white-space: nowrap; }
tr:last-child td { border-bottom: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.rec { margin-top: 16px; border-left: 4px solid var(--ok); background: var(--ok-bg); padding: 12px 14px; border-radius: 4px; }
.rec.change { border-color: var(--warn); background: var(--warn-bg); }
.rec.none { border-color: var(--fail); background: var(--fail-bg); }
.rec strong { display: block; font-size: 15px; margin-bottom: 2px; }
.rec code.setting { display: block; margin-top: 8px; padding: 8px 10px; background: rgba(255,255,255,.7); border-radius: 4px; white-space: pre-wrap; overflow-wrap: anywhere; }
section.check { background: var(--panel); border: 1px solid var(--line); border-left: 4px solid var(--skip); border-radius: 8px; padding: 14px 20px 16px; margin-bottom: 14px; break-inside: avoid; }
section.check[data-status="pass"] { border-left-color: var(--ok); }
section.check[data-status="warn"] { border-left-color: #d4a72c; }
section.check[data-status="fail"] { border-left-color: var(--fail); }
.check-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 12px; }
.check-head h3 { margin: 0; font-size: 15px; font-weight: 600; }
.check-head .id { color: var(--muted); }
.check-head .meta { color: var(--muted); font-size: 12.5px; margin-left: auto; }
dl.facts { display: grid; grid-template-columns: 80px 1fr; gap: 4px 12px; margin: 10px 0 0; }
dl.facts dt { color: var(--muted); font-size: 12px; padding-top: 1px; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
dl.facts dd.fix { font-weight: 500; }
.wf { margin-top: 12px; border-top: 1px dashed var(--line); padding-top: 10px; }
.wf-row { display: grid; grid-template-columns: 200px 1fr 82px; align-items: center; gap: 10px; height: 22px; }
.wf-name { font-size: 12.5px; white-space: nowrap; }
.wf-name .st { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 6px; background: var(--skip); }
.wf-name .st.ok { background: var(--ok); } .wf-name .st.warn { background: #d4a72c; } .wf-name .st.fail { background: var(--fail); }
.wf-name .stop { color: var(--fail); font-size: 11px; font-weight: 600; margin-left: 4px; }
.wf-track { position: relative; height: 12px; background: repeating-linear-gradient(to right, #f3f5f7 0, #f3f5f7 calc(25% - 1px), #e3e8ed calc(25% - 1px), #e3e8ed 25%); border-radius: 2px; }
.wf-bar { position: absolute; top: 0; bottom: 0; min-width: 2px; border-radius: 2px; background: var(--skip); }
.wf-bar.ok { background: #2da44e; } .wf-bar.warn { background: #d4a72c; } .wf-bar.skip { background: #afb8c1; }
.wf-bar.fail { background: repeating-linear-gradient(135deg, #cf222e 0, #cf222e 6px, #e5534b 6px, #e5534b 12px); }
.wf-ms { text-align: right; font-size: 12px; font-variant-numeric: tabular-nums; white-space: nowrap; }
.wf-row.unreached { color: var(--muted); }
.wf-row.unreached .wf-track { background: none; border-top: 1px dashed var(--line); height: 0; }
.wf-axis { display: grid; grid-template-columns: 200px 1fr 82px; gap: 10px; font-size: 10.5px; color: var(--muted); margin-top: 2px; }
.wf-axis .ticks { display: flex; justify-content: space-between; }
.nophases { margin-top: 10px; color: var(--muted); font-size: 12.5px; }
details { margin-top: 10px; }
summary { cursor: pointer; color: var(--accent); font-size: 12.5px; }
table.detail td { font-size: 12.5px; padding: 4px 10px; }
table.detail td:first-child { white-space: nowrap; color: var(--muted); width: 1%; }
table.detail td code { white-space: pre-wrap; overflow-wrap: anywhere; }
footer { color: var(--muted); font-size: 12px; padding: 0 0 30px; }
@media print {
  html { background: #fff; } header.top { background: #fff; color: var(--ink); border-bottom: 2px solid var(--ink); }
  header.top .sub, .ctx dt, header.top h1 .ver { color: var(--muted); }
  .panel, section.check { border-color: #bbb; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"#;
