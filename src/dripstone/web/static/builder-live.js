// The builder's view of a running campaign: counts on each step (polled while the page is
// seen), what a live edit does to the people waiting (asked before the save), who waits at a
// step and the path one of them took, and a test run of the campaign for typed facts.
const POLL_MS = 5000;
const OUTCOMES = { stays: "stay", moves: "move to", leaves: "leave the campaign" };

export function startLive(ctx) {
  const { data, el, nodeOf, nameOf } = ctx;
  const base = data.base_url;
  const headers = { "content-type": "application/json", "x-csrf-token": data.csrf_token };
  let counts = {};
  let path = null; // {visited: Set of node ids, pairs: Set of "source>target", current}

  // --- counts on the steps ------------------------------------------------------------------
  function countLines(node) {
    const c = counts[node.id];
    if (!c || data.state === "draft") return [];
    const lines = [[`${c.entered} in · ${c.waiting} waiting · ${c.completed} done`, `${c.entered} entered, ${c.waiting} waiting now, ${c.completed} completed`]];
    if (node.type === "email") lines.push([`${c.sent} sent · ${c.opened} opened · ${c.clicked} clicked`]);
    return lines;
  }

  function showCounts(button, node) {
    let box = button.querySelector(".bnode-counts");
    if (!box) {
      box = el("span", { class: "bnode-counts" });
      button.querySelector(".bnode-text").after(box);
    }
    box.replaceChildren(...countLines(node).map(([line, title]) => el("span", { text: line, title })));
  }

  function refreshCounts() {
    for (const button of ctx.canvas.querySelectorAll(".bnode")) {
      const node = nodeOf(button.dataset.node);
      if (node) showCounts(button, node);
    }
  }

  // The state badge and the table of counts under the drawing say the same as the steps.
  const grouped = new Intl.NumberFormat("en-US");
  function refreshPage() {
    const badge = document.getElementById("state");
    if (badge && badge.textContent !== data.state) {
      badge.textContent = data.state;
      badge.className = `badge state-${data.state}`;
      if (!document.getElementById("state-changed")) {
        badge.after(el("span", { id: "state-changed", class: "muted", text: " (since this page opened: reload it for the buttons that go with it)" }));
      }
    }
    for (const [id, c] of Object.entries(counts)) {
      const cells = document.getElementById(`step-${id}`)?.querySelectorAll("td.num") ?? [];
      const values = [c.entered, c.waiting, c.completed, c.sent, c.opened, c.clicked];
      cells.forEach((cell, i) => {
        if (cell.textContent !== "—") cell.textContent = grouped.format(values[i]);
      });
    }
  }

  async function poll() {
    try {
      const answer = await fetch(`${base}/node-counts`, { headers: { accept: "application/json" } });
      if (!answer.ok || answer.redirected) return;
      const body = await answer.json();
      counts = body.nodes;
      data.state = body.state;
      refreshCounts();
      refreshPage();
    } catch {
      // Offline for a moment: the next poll tries again.
    }
  }

  let timer = null;
  function watch() {
    if (document.visibilityState === "visible" && timer === null) {
      poll();
      timer = window.setInterval(poll, POLL_MS);
    } else if (document.visibilityState !== "visible" && timer !== null) {
      window.clearInterval(timer);
      timer = null;
    }
  }
  document.addEventListener("visibilitychange", watch);
  watch();

  // --- a path on the drawing ----------------------------------------------------------------
  function highlight(nodeIds, current) {
    const pairs = new Set();
    for (let i = 1; i < nodeIds.length; i += 1) pairs.add(`${nodeIds[i - 1]}>${nodeIds[i]}`);
    path = { visited: new Set(nodeIds), pairs, current };
    ctx.rerender();
    clearButtons();
    reveal(current);
  }

  // Scrolls the drawing's frame, not the page, to where the path ends.
  function reveal(id) {
    const button = id && ctx.canvas.querySelector(`.bnode[data-node="${CSS.escape(id)}"]`);
    const frame = ctx.canvas.closest(".canvas-wrap");
    if (!button || !frame) return;
    const top = button.getBoundingClientRect().top - frame.getBoundingClientRect().top;
    if (top < 0 || top + button.offsetHeight > frame.clientHeight) frame.scrollTop += top - 16;
  }

  function clear() {
    path = null;
    ctx.rerender();
    clearButtons();
  }

  function clearButtons() {
    for (const button of ctx.root.querySelectorAll("[data-live=clear-path]")) button.hidden = !path;
  }

  const nodeClass = (id) => {
    if (!path) return "";
    if (id === path.current) return " on-path here";
    return path.visited.has(id) ? " on-path" : "";
  };
  const edgeClass = (edge) => (path?.pairs.has(`${edge.source}>${edge.target}`) ? " on-path" : "");
  const clearButton = () => el("button", {
    type: "button", class: "link", "data-live": "clear-path", text: "Clear the highlighted path",
    hidden: !path, onclick: clear,
  });

  // --- who is here --------------------------------------------------------------------------
  function whoIsHere(node) {
    if (data.state === "draft" || node.type === "exit") return null;
    const box = el("section", { class: "who", "aria-label": `Who is at ${node.id}` });
    const list = el("ul", { class: "who-list" });
    const status = el("p", { class: "hint", role: "status" });
    let more = null;
    async function load(after) {
      const query = after === undefined ? "" : `?after=${after}`;
      const answer = await fetch(`${base}/nodes/${encodeURIComponent(node.id)}/waiting${query}`);
      const body = await answer.json().catch(() => null);
      if (!answer.ok || !body) {
        status.textContent = body?.errors?.[0]?.message ?? `The server answered ${answer.status}.`;
        return;
      }
      for (const s of body.subscribers) {
        list.append(el("li", {}, el("button", {
          type: "button", class: "link", text: s.email, "data-subscriber": s.id,
          onclick: () => showPath(s, status),
        }), el("span", { class: "muted", text: ` next step ${new Date(s.next_run_at).toLocaleString()} ` }),
        tester && data.editable ? el("button", {
          type: "button", class: "link", text: "test a path", "aria-label": `Test a path for ${s.email}`,
          onclick: () => testFor(s),
        }) : null));
      }
      status.textContent = list.children.length ? "" : "No one waits here now.";
      more?.remove();
      more = body.next === null ? null : el("button", {
        type: "button", class: "secondary", text: "More", onclick: () => load(body.next),
      });
      if (more) box.append(more);
    }
    box.append(el("button", {
      type: "button", class: "secondary", "data-key": "who", text: "Who is here",
      onclick: (event) => { event.target.remove(); load(); },
    }), list, status, clearButton());
    return box;
  }

  async function showPath(subscriber, status) {
    const answer = await fetch(`${base}/subscribers/${subscriber.id}/path`);
    const body = await answer.json().catch(() => null);
    if (!answer.ok || !body) {
      status.textContent = body?.errors?.[0]?.message ?? `The server answered ${answer.status}.`;
      return;
    }
    highlight(body.visits.map((v) => v.node_id), body.current);
    status.textContent = `${subscriber.email}: ${body.visits.length} steps, now ${body.state}${body.current ? ` at ${body.current}` : ""}.`;
  }

  // --- a live edit, asked first -------------------------------------------------------------
  const dialog = document.getElementById("builder-confirm");

  // A removed step is named as it was saved.
  function named(id) {
    const node = nodeOf(id) ?? ctx.savedGraph().nodes.find((n) => n.id === id);
    return node ? nameOf(node) : id;
  }

  function describeChange(change) {
    const where = named(change.node_id);
    const target = change.outcome === "moves" ? ` ${named(change.to)}` : "";
    const verb = change.outcome === "stays" ? `stay at ${where}` : `${OUTCOMES[change.outcome]}${target}`;
    return `${change.count} waiting at ${where} → ${verb}`;
  }

  // Resolves true to save: always for a draft; for a started or paused campaign, once the
  // user has seen what the edit does to the people waiting and confirmed.
  async function confirmSave(graph) {
    if (data.state === "draft") return true;
    const answer = await fetch(`${base}/edit-preview`, { method: "POST", headers, body: JSON.stringify(graph) });
    const body = await answer.json().catch(() => null);
    if (!answer.ok || !body?.changes) {
      ctx.showProblems(body?.errors ?? [{ node_id: null, message: `Not saved: the server answered ${answer.status}.` }]);
      return false;
    }
    const items = dialog.querySelector("#builder-confirm-changes");
    items.replaceChildren(...body.changes.map((c) => el("li", { "data-node": c.node_id, text: describeChange(c) })));
    if (!body.changes.length) items.append(el("li", { text: "No one waits at a changed or removed step." }));
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "save"), { once: true });
      dialog.returnValue = "";
      dialog.showModal();
    });
  }

  // --- test a path --------------------------------------------------------------------------
  const tester = document.getElementById("builder-simulate");

  function renderTester() {
    if (!tester) return;
    const emails = ctx.graph().nodes.filter((n) => n.type === "email");
    const facts = tester.querySelector("#simulate-emails");
    const checked = new Set([...facts.querySelectorAll("input:checked")].map((b) => b.name));
    facts.replaceChildren(...emails.flatMap((n) => ["opened", "clicked"].map((what) => el("label", { class: "choice" },
      el("input", { type: "checkbox", name: `${what}:${n.id}`, checked: checked.has(`${what}:${n.id}`) }),
      ` ${what} ${nameOf(n)}`))));
    if (!emails.length) facts.append(el("p", { class: "hint", text: "No email steps yet." }));
  }

  function testFor(subscriber) {
    const box = tester.querySelector("#simulate-subscriber");
    box.value = subscriber.id;
    tester.querySelector("#simulate-for").textContent = subscriber.email;
    box.focus();
  }

  function fieldValues(text) {
    const fields = {};
    for (const line of text.split("\n")) {
      const at = line.indexOf("=");
      if (at > 0) fields[line.slice(0, at).trim()] = line.slice(at + 1).trim();
    }
    return fields;
  }

  // The step as the engine says it, with its mailing's subject for the mailing's id.
  function said(step) {
    const mailing = data.mailings.find((m) => m.id === step.mailing_id);
    return mailing ? step.what.replace(step.mailing_id, `"${mailing.subject}"`) : step.what;
  }

  async function simulate(event) {
    event.preventDefault();
    const form = event.target;
    const out = tester.querySelector("#simulate-result");
    const boxes = [...form.querySelectorAll("#simulate-emails input:checked")].map((b) => b.name.split(":"));
    const facts = {
      opened: boxes.filter(([what]) => what === "opened").map(([, id]) => id),
      clicked: boxes.filter(([what]) => what === "clicked").map(([, id]) => id),
      fields: fieldValues(form.elements.fields.value),
    };
    const zone = form.elements.timezone.value.trim();
    if (zone) facts.timezone = zone;
    const subscriber = form.elements.subscriber.value.trim();
    const named = !subscriber ? {} : subscriber.includes("@") ? { subscriber_email: subscriber } : { subscriber_id: subscriber };
    const request = { facts, ...named };
    const answer = await fetch(`${base}/simulate`, { method: "POST", headers, body: JSON.stringify(request) });
    const body = await answer.json().catch(() => null);
    if (!answer.ok || !body?.data) {
      const detail = body?.errors?.map((e) => (e.field ? `${e.field}: ${e.message}` : e.message)).join("; ");
      out.replaceChildren(el("p", { class: "notice error", role: "alert", text: detail || `The server answered ${answer.status}.` }));
      return;
    }
    const run = body.data;
    const steps = el("ol", { class: "simulated" }, ...run.steps.map((s) => el("li", { "data-node": s.node_id },
      el("strong", { text: nodeOf(s.node_id) ? nameOf(nodeOf(s.node_id)) : s.node_id }),
      ` ${said(s)} `, el("span", { class: "muted", text: new Date(s.at).toLocaleString() }))));
    const ending = { completed: "Completes the campaign.", exited: "Leaves the campaign.", unfinished: "Still waiting at the end of the test." }[run.outcome];
    out.replaceChildren(steps, el("p", { id: "simulate-outcome", text: `${ending}${run.reason ? ` (${run.reason})` : ""}` }));
    const ids = run.steps.map((s) => s.node_id);
    highlight(ids, ids[ids.length - 1]);
  }

  if (tester) {
    tester.hidden = !data.editable;
    tester.querySelector("form").addEventListener("submit", simulate);
    tester.querySelector("[data-live=clear-path]").addEventListener("click", clear);
  }

  return {
    decorate: showCounts, nodeClass, edgeClass, panelExtras: whoIsHere, confirmSave,
    rendered: renderTester,
  };
}
