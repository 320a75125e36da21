// The drip builder on a campaign's page: steps are buttons laid out over an SVG of arrows,
// edited in the side panel, saved with PUT as the graph the API takes. The page embeds its
// starting data in <script type="application/json" id="builder-data">; dagre (loaded before
// this module) lays out the steps that have no position of their own.
const data = JSON.parse(document.getElementById("builder-data").textContent);
const root = document.getElementById("builder");
const canvas = document.getElementById("builder-canvas");
const arrows = document.getElementById("builder-arrows");
const panel = document.getElementById("builder-panel");
const statusLine = document.getElementById("builder-status");
const errorBox = document.getElementById("builder-errors");
const editable = data.editable;
const { startLive } = await import(data.live_url);

const WIDTH = 220;
const HEIGHT = 104;
const GAP = 24; // the least room between two steps
const MARGIN = 8;
const KINDS = {
  trigger: "Trigger", email: "Email", delay: "Delay", wait_until: "Wait until",
  condition: "Condition", split: "Split", action: "Action", exit: "Exit",
};
const HANDLES = { condition: ["yes", "no"], split: ["a", "b"], exit: [] };
const UNITS = ["seconds", "minutes", "hours", "days", "weeks"];
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const CHECKS = { opened: "opened an email", clicked: "clicked in an email", field: "a field", in_list: "is in a list" };
// graph.py's FieldOp and ActionKind.
const OPS = {
  eq: "is", neq: "is not", contains: "contains", not_contains: "does not contain",
  starts_with: "starts with", ends_with: "ends with", empty: "is empty",
  not_empty: "is not empty", gt: "is greater than", lt: "is less than",
};
const NO_VALUE_OPS = ["empty", "not_empty"];
const ACTIONS = {
  add_to_list: "add to a list", remove_from_list: "remove from a list",
  set_field: "set a custom field", unsubscribe: "unsubscribe",
};
const CONDITION_KEYS = ["node", "url", "name", "op", "value", "list_id"];
const ACTION_KEYS = ["list_id", "name", "value"];

let graph = JSON.parse(JSON.stringify(data.graph));
let saved = JSON.stringify(graph);
let selected = null; // {node: id} or {edge: index}
let focusId = null; // the step that takes Tab (roving tabindex)
let undoStack = [];
let redoStack = [];
let problems = []; // [{node_id, field, message}] from the last refused save
let laidOut = {};

const mailingsById = Object.fromEntries(data.mailings.map((m) => [m.id, m]));
const listsById = Object.fromEntries(data.lists.map((l) => [l.id, l]));

function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") element.textContent = value;
    else if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child) element.append(child);
  return element;
}

function svg(tag, attributes = {}) {
  const element = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  return element;
}

const nodeOf = (id) => graph.nodes.find((n) => n.id === id);
const handlesOf = (node) => HANDLES[node.type] ?? [null];
const edgeOn = (source, handle) =>
  graph.edges.findIndex((e) => e.source === source && (e.sourceHandle ?? null) === handle);

// --- changes, undo and redo ----------------------------------------------------------------
function change(mutate) {
  const before = JSON.stringify(graph);
  mutate();
  if (JSON.stringify(graph) === before) return;
  undoStack.push(before);
  redoStack = [];
  render();
}

function undo() {
  if (!undoStack.length) return;
  redoStack.push(JSON.stringify(graph));
  graph = JSON.parse(undoStack.pop());
  keepSelection();
  render(true);
}

function redo() {
  if (!redoStack.length) return;
  undoStack.push(JSON.stringify(graph));
  graph = JSON.parse(redoStack.pop());
  keepSelection();
  render(true);
}

function keepSelection() {
  if (selected?.node && !nodeOf(selected.node)) selected = null;
  if (selected?.edge !== undefined && !graph.edges[selected.edge]) selected = null;
}

const dirty = () => JSON.stringify(graph) !== saved;

// --- layout ---------------------------------------------------------------------------------
function layOut() {
  const g = new window.dagre.graphlib.Graph();
  g.setGraph({ rankdir: "TB", nodesep: 40, ranksep: 56, marginx: MARGIN, marginy: MARGIN });
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of graph.nodes) g.setNode(node.id, { width: WIDTH, height: HEIGHT });
  for (const edge of graph.edges) {
    if (nodeOf(edge.source) && nodeOf(edge.target)) g.setEdge(edge.source, edge.target);
  }
  window.dagre.layout(g);
  laidOut = {};
  for (const node of graph.nodes) {
    const placed = g.node(node.id);
    laidOut[node.id] = { x: placed.x - WIDTH / 2, y: placed.y - HEIGHT / 2 };
  }
  // dagre knows nothing of the steps put somewhere by hand: a laid-out step that would land
  // on one moves right until it is clear of every step placed so far.
  const taken = graph.nodes.filter(ownPosition).map((n) => n.position);
  for (const node of graph.nodes) {
    if (ownPosition(node)) continue;
    const spot = laidOut[node.id];
    for (let hit = overlap(spot, taken); hit; hit = overlap(spot, taken)) spot.x = hit.x + WIDTH + GAP;
    taken.push(spot);
  }
}

const overlap = (a, boxes) =>
  boxes.find((b) => Math.abs(a.x - b.x) < WIDTH + GAP / 2 && Math.abs(a.y - b.y) < HEIGHT + GAP / 2);

function ownPosition(node) {
  const p = node.position;
  return Boolean(p && Number.isFinite(p.x) && Number.isFinite(p.y) && !piled.has(`${p.x},${p.y}`));
}

// A step keeps its own position, unless another step has the very same one (a program that
// wrote {x: 0, y: 0} everywhere): piled-up steps are laid out instead.
function place(node) {
  if (ownPosition(node)) return { x: node.position.x, y: node.position.y };
  return laidOut[node.id] ?? { x: MARGIN, y: MARGIN };
}

let piled = new Set();

function findPiled() {
  const seen = new Set();
  piled = new Set();
  for (const { position: p } of graph.nodes) {
    if (!p) continue;
    const key = `${p.x},${p.y}`;
    if (seen.has(key)) piled.add(key);
    seen.add(key);
  }
}

// --- what a step says -----------------------------------------------------------------------
function describe(node) {
  const d = node.data ?? {};
  switch (node.type) {
    case "trigger": return "start of the campaign";
    case "email": {
      const mailing = mailingsById[d.campaign_mailing_id];
      if (d.subject) return d.subject;
      if (mailing) return mailing.subject;
      return d.campaign_mailing_id ? "a deleted mailing" : "no mailing chosen";
    }
    case "delay": {
      const unit = Number(d.amount) === 1 ? String(d.unit ?? "").replace(/s$/, "") : d.unit;
      return `wait ${d.amount ?? "?"} ${unit ?? ""}`;
    }
    case "wait_until": {
      const days = d.weekdays?.length ? d.weekdays.map((i) => WEEKDAYS[i]).join(", ") : "any day";
      return `${d.time ?? "?"} ${days}${d.timezone ? ` (${d.timezone})` : ""}`;
    }
    case "condition":
      if (d.check === "opened" || d.check === "clicked") {
        return `${d.check} ${d.node ?? "?"}${d.url ? ` ${d.url}` : ""}`;
      }
      if (d.check === "in_list") return `in list ${listsById[d.list_id]?.name ?? d.list_id ?? "?"}`;
      return `${d.name ?? "?"} ${OPS[d.op] ?? d.op ?? ""}${d.value !== undefined && !NO_VALUE_OPS.includes(d.op) ? ` ${d.value}` : ""}`;
    case "split": return `a ${d.weights?.a ?? "?"} / b ${d.weights?.b ?? "?"}`;
    case "action":
      if (d.do === "add_to_list" || d.do === "remove_from_list") {
        const verb = d.do === "add_to_list" ? "add to" : "remove from";
        return `${verb} ${listsById[d.list_id]?.name ?? d.list_id ?? "?"}`;
      }
      if (d.do === "set_field") return `set ${d.name ?? "?"} = ${d.value ?? ""}`;
      return d.do === "unsubscribe" ? "unsubscribe" : "choose what to do";
    case "exit": return "the end";
    default: return "";
  }
}

const nameOf = (node) => `${KINDS[node.type] ?? node.type} ${node.id}`;

// --- drawing --------------------------------------------------------------------------------
function render(rebuildPanel = false) {
  const focused = document.activeElement?.closest?.(".bnode")?.dataset.node;
  findPiled();
  layOut();
  for (const old of canvas.querySelectorAll(".bnode")) old.remove();
  for (const old of arrows.querySelectorAll("g.link, text.link-label")) old.remove();
  if (!nodeOf(focusId)) focusId = selected?.node ?? graph.nodes[0]?.id ?? null;
  let width = 0;
  let height = 0;
  for (const node of graph.nodes) {
    const { x, y } = place(node);
    width = Math.max(width, x + WIDTH + MARGIN);
    height = Math.max(height, y + HEIGHT + MARGIN + 16);
    canvas.append(drawNode(node, x, y));
  }
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  arrows.setAttribute("width", width);
  arrows.setAttribute("height", height);
  const labels = [];
  graph.edges.forEach((edge, index) => {
    const link = drawEdge(edge, index, labels);
    if (link) arrows.append(link);
  });
  arrows.append(...labels); // over every arrow, so none hides a label
  renderPanel(rebuildPanel);
  renderStatus();
  live.rendered();
  if (focused) focusNode(nodeOf(focused) ? focused : focusId);
}

// A branch's handles sit in the order of the steps they lead to, so its arrows never cross.
function handleOrder(node) {
  const order = handlesOf(node);
  if (order.length !== 2) return order;
  const xs = order.map((h) => {
    const index = edgeOn(node.id, h);
    const target = index >= 0 ? nodeOf(graph.edges[index].target) : null;
    return target ? place(target).x : null;
  });
  return xs[0] !== null && xs[1] !== null && xs[0] > xs[1] ? [order[1], order[0]] : order;
}

function handleX(node, handle) {
  const handles = handleOrder(node);
  const i = handles.indexOf(handle);
  return place(node).x + (WIDTH * (i + 1)) / (handles.length + 1);
}

function drawNode(node, x, y) {
  const problem = problems.filter((p) => p.node_id === node.id);
  const isSelected = selected?.node === node.id;
  const button = el(
    "button",
    {
      type: "button",
      class: `bnode kind-${node.type}${isSelected ? " selected" : ""}${problem.length ? " invalid" : ""}${live.nodeClass(node.id)}`,
      "data-node": node.id,
      tabindex: node.id === focusId ? "0" : "-1",
      "aria-pressed": isSelected ? "true" : "false",
      "aria-describedby": problem.length ? `problem-${node.id}` : null,
    },
    el("span", { class: "bnode-kind", text: nameOf(node) }),
    el("span", { class: "bnode-text", text: describe(node), title: describe(node) }),
    problem.length
      ? el("span", { class: "bnode-problem", id: `problem-${node.id}`, text: problem.map((p) => p.message).join("; ") })
      : null,
  );
  button.style.left = `${x}px`;
  button.style.top = `${y}px`;
  live.decorate(button, node);
  if (editable) {
    for (const handle of handlesOf(node)) {
      const dot = el("span", {
        class: "bnode-handle",
        "data-handle": handle ?? "",
        "aria-hidden": "true",
        title: handle ? `drag to connect "${handle}"` : "drag to connect",
      }, handle && edgeOn(node.id, handle) < 0 ? el("span", { text: handle }) : null);
      dot.style.left = `${handleX(node, handle) - x}px`;
      button.append(dot);
    }
  }
  return button;
}

function curve(sx, sy, tx, ty) {
  const bend = Math.max(30, Math.abs(ty - sy) / 2);
  return `M ${sx} ${sy} C ${sx} ${sy + bend}, ${tx} ${ty - bend}, ${tx} ${ty}`;
}

function drawEdge(edge, index, labels) {
  const source = nodeOf(edge.source);
  const target = nodeOf(edge.target);
  if (!source || !target) return null;
  const handle = edge.sourceHandle ?? null;
  const sx = handleX(source, handles(source, handle));
  const sy = place(source).y + HEIGHT;
  const tx = place(target).x + WIDTH / 2;
  const ty = place(target).y;
  const d = curve(sx, sy, tx, ty);
  const group = svg("g", { class: `link${selected?.edge === index ? " selected" : ""}${live.edgeClass(edge)}`, "data-edge": index });
  group.append(svg("path", { class: "link-hit", d }));
  group.append(svg("path", { class: "link-line", d, "marker-end": "url(#builder-head)" }));
  if (handle) {
    // The first branch is labelled on its left, the second on its right: never on the arrow.
    const first = handleOrder(source).indexOf(handle) === 0;
    const label = svg("text", {
      class: "link-label", x: first ? sx - 8 : sx + 8, y: sy + 18, "text-anchor": first ? "end" : "start",
      "data-edge": index,
    });
    label.textContent = handle;
    labels.push(label);
  }
  return group;
}

// An edge whose handle the node does not have (a broken graph) is drawn from its first one.
const handles = (node, handle) => (handlesOf(node).includes(handle) ? handle : handlesOf(node)[0]);

function renderStatus() {
  if (!statusLine) return;
  statusLine.textContent = dirty() ? "Unsaved changes" : statusLine.dataset.saved || "No unsaved changes";
  statusLine.classList.toggle("dirty", dirty());
  root.querySelector("[data-command=undo]")?.toggleAttribute("disabled", !undoStack.length);
  root.querySelector("[data-command=redo]")?.toggleAttribute("disabled", !redoStack.length);
}

// --- the side panel -------------------------------------------------------------------------
let fieldCount = 0;

function field(label, control, hint) {
  const id = `bf-${++fieldCount}`;
  control.id = id;
  if (!editable) control.disabled = true;
  return el("div", { class: "bfield" }, el("label", { for: id, text: label }), hint ? el("p", { class: "hint", text: hint }) : null, control);
}

function select(options, value, onchange, blank) {
  const control = el("select", { onchange: (event) => onchange(event.target.value) });
  if (blank !== undefined) control.append(el("option", { value: "", text: blank }));
  for (const [optionValue, text] of options) {
    control.append(el("option", { value: optionValue, text, selected: optionValue === value }));
  }
  if (value && !options.some(([v]) => v === value)) {
    control.append(el("option", { value, text: `${value} (not found)`, selected: true }));
  }
  return control;
}

function input(type, value, onchange, attributes = {}) {
  return el("input", {
    type, value: value ?? "", ...attributes,
    onchange: (event) => onchange(event.target.value),
  });
}

// Sets `key` of the node's data (removing it when `value` is undefined or ""), as one change.
function setData(node, key, value) {
  change(() => {
    const d = node.data ?? (node.data = {});
    if (value === undefined || value === "") delete d[key];
    else d[key] = value;
  });
}

function refocus(selector) {
  panel.querySelector(selector)?.focus();
}

// What the panel's controls depend on besides their own values: typing a value changes the
// graph without rebuilding the panel, so Tab moves on from the field as usual.
function panelShape() {
  const node = selected?.node ? nodeOf(selected.node) : null;
  const d = node?.data ?? {};
  return JSON.stringify([
    selected, graph.nodes.map((n) => [n.id, n.type]), graph.edges,
    node && [d.check, d.do, NO_VALUE_OPS.includes(d.op), d.campaign_mailing_id, d.node],
  ]);
}

let shownShape = null;

function renderPanel(force = false) {
  const shape = panelShape();
  if (!force && shape === shownShape) return;
  shownShape = shape;
  fieldCount = 0;
  const active = document.activeElement;
  const focusedKey = panel.contains(active) ? active.dataset.key : null;
  panel.replaceChildren();
  if (selected?.edge !== undefined) {
    renderEdgePanel(graph.edges[selected.edge], selected.edge);
  } else if (selected?.node && nodeOf(selected.node)) {
    renderNodePanel(nodeOf(selected.node));
  } else {
    panel.append(el("h3", { id: "panel-heading", text: "Nothing selected" }), el("p", { class: "hint", text: "Select a step or a connection." }));
  }
  if (focusedKey) refocus(`[data-key="${focusedKey}"]`);
}

function renderEdgePanel(edge, index) {
  const source = nodeOf(edge.source);
  const target = nodeOf(edge.target);
  panel.append(
    el("h3", { id: "panel-heading", text: "Connection" }),
    el("p", { text: `From ${source ? nameOf(source) : edge.source}${edge.sourceHandle ? ` (${edge.sourceHandle})` : ""} to ${target ? nameOf(target) : edge.target}.` }),
  );
  if (editable) {
    panel.append(el("div", { class: "actions" }, el("button", {
      type: "button", class: "danger", "data-key": "remove-edge", text: "Remove connection",
      onclick: () => removeEdge(index),
    })));
  }
}

function renderNodePanel(node) {
  const d = node.data ?? {};
  panel.append(el("h3", { id: "panel-heading", text: nameOf(node) }));
  const body = el("div", { class: "bfields" });
  panel.append(body);
  const add = (...items) => body.append(...items.filter(Boolean));
  const keyed = (control, key) => { control.dataset.key = key; return control; };

  if (node.type === "email") {
    const mailing = mailingsById[d.campaign_mailing_id];
    add(field("Mailing", keyed(select(data.mailings.map((m) => [m.id, m.subject]), d.campaign_mailing_id,
      (v) => setData(node, "campaign_mailing_id", v), "— choose a mailing —"), "mailing")));
    if (mailing) add(el("p", {}, el("a", { href: mailing.url, target: "_blank", rel: "noopener", text: `Edit "${mailing.subject}"` })));
    add(field("Subject (optional)", keyed(input("text", d.subject, (v) => setData(node, "subject", v)), "subject"), "Instead of the mailing's subject."));
    add(field("From email (optional)", keyed(input("email", d.from_email, (v) => setData(node, "from_email", v)), "from_email")));
    add(field("From name (optional)", keyed(input("text", d.from_name, (v) => setData(node, "from_name", v)), "from_name")));
  } else if (node.type === "delay") {
    add(field("Wait", keyed(input("number", d.amount, (v) => setData(node, "amount", v === "" ? undefined : Number(v)), { min: "0", step: "any" }), "amount")));
    add(field("Unit", keyed(select(UNITS.map((u) => [u, u]), d.unit, (v) => setData(node, "unit", v)), "unit")));
  } else if (node.type === "wait_until") {
    add(field("Time of day", keyed(input("time", d.time, (v) => setData(node, "time", v)), "time")));
    const days = el("fieldset", {}, el("legend", { text: "On (none: any day)" }));
    WEEKDAYS.forEach((day, i) => {
      const box = el("input", {
        type: "checkbox", "data-key": `weekday-${i}`, checked: d.weekdays?.includes(i), disabled: !editable,
        onchange: (event) => {
          const chosen = new Set(d.weekdays ?? []);
          if (event.target.checked) chosen.add(i); else chosen.delete(i);
          setData(node, "weekdays", chosen.size ? [...chosen].sort((a, b) => a - b) : undefined);
        },
      });
      days.append(el("label", { class: "choice" }, box, ` ${day}`));
    });
    add(days);
    add(field("Time zone (optional)", keyed(input("text", d.timezone, (v) => setData(node, "timezone", v.trim()), { list: "builder-zones", autocomplete: "off" }), "timezone"), "Type to search, e.g. Europe/Berlin; empty: the subscriber's, else UTC."));
  } else if (node.type === "condition") {
    add(field("Check", keyed(select(Object.entries(CHECKS), d.check, (v) => setCheck(node, v)), "check")));
    if (d.check === "opened" || d.check === "clicked") {
      const emails = graph.nodes.filter((n) => n.type === "email").map((n) => [n.id, `${n.id}: ${describe(n)}`]);
      add(field("Email step", keyed(select(emails, d.node, (v) => setData(node, "node", v), "— choose an email step —"), "node")));
      if (d.check === "clicked") {
        // The chosen email's links, to pick from; a link can still be typed.
        const email = nodeOf(d.node);
        const links = mailingsById[email?.data?.campaign_mailing_id]?.links ?? [];
        add(el("datalist", { id: "builder-links" }, ...links.map((href) => el("option", { value: href }))));
        const hint = links.length ? "Empty: any link. Type, or pick one of the email's links." : "Empty: any link.";
        add(field("Link (optional)", keyed(input("text", d.url, (v) => setData(node, "url", v.trim()), { list: "builder-links", autocomplete: "off" }), "url"), hint));
      }
    } else if (d.check === "field") {
      add(field("Field", keyed(input("text", d.name, (v) => setData(node, "name", v.trim())), "name"), "email, first_name, last_name, phone_number or custom.<name>"));
      add(field("Test", keyed(select(Object.entries(OPS), d.op, (v) => setData(node, "op", v)), "op")));
      if (!NO_VALUE_OPS.includes(d.op)) add(field("Value", keyed(input("text", d.value, (v) => change(() => { node.data.value = v; })), "value")));
    } else if (d.check === "in_list") {
      add(field("List", keyed(select(data.lists.map((l) => [l.id, l.name]), d.list_id, (v) => setData(node, "list_id", v), "— choose a list —"), "list_id")));
    }
  } else if (node.type === "split") {
    for (const handle of ["a", "b"]) {
      add(field(`Weight ${handle}`, keyed(input("number", d.weights?.[handle], (v) => change(() => {
        node.data.weights = { ...(node.data.weights ?? {}), [handle]: Number(v) };
      }), { min: "0", step: "any" }), `weight-${handle}`)));
    }
  } else if (node.type === "action") {
    add(field("Do", keyed(select(Object.entries(ACTIONS), d.do, (v) => setAction(node, v)), "do")));
    if (d.do === "add_to_list" || d.do === "remove_from_list") {
      add(field("List", keyed(select(data.lists.map((l) => [l.id, l.name]), d.list_id, (v) => setData(node, "list_id", v), "— choose a list —"), "list_id")));
    } else if (d.do === "set_field") {
      add(field("Custom field", keyed(input("text", (d.name ?? "").replace(/^custom\./, ""), (v) => setData(node, "name", v.trim() ? `custom.${v.trim()}` : undefined)), "name")));
      add(field("Value", keyed(input("text", d.value, (v) => change(() => { node.data.value = v; })), "value")));
    }
  } else if (node.type === "trigger") {
    add(el("p", { class: "hint", text: "Where every subscriber starts." }));
  } else if (node.type === "exit") {
    add(el("p", { class: "hint", text: "An explicit end: nothing follows." }));
  }
  renderConnections(node);
  const here = live.panelExtras(node);
  if (here) panel.append(here);
  if (editable && node.type !== "trigger") {
    panel.append(el("div", { class: "actions" }, el("button", {
      type: "button", class: "danger", "data-key": "delete-node", text: "Delete step",
      onclick: () => removeNode(node.id),
    })));
  }
}

function renderConnections(node) {
  const handles_ = handlesOf(node);
  if (!handles_.length) return;
  const group = el("fieldset", { class: "connections" }, el("legend", { text: "Next steps" }));
  const others = graph.nodes.filter((n) => n.id !== node.id && n.type !== "trigger").map((n) => [n.id, `${nameOf(n)}: ${describe(n)}`]);
  for (const handle of handles_) {
    const index = edgeOn(node.id, handle);
    const current = index >= 0 ? graph.edges[index].target : "";
    const label = handle ? `Next step (${handle})` : "Next step";
    const control = select(others, current, (v) => connect(node.id, handle, v || null), "— none: the end —");
    control.dataset.key = `next-${handle ?? ""}`;
    group.append(field(label, control));
    if (editable && index >= 0) {
      group.append(el("button", {
        type: "button", class: "link", "data-key": `remove-${handle ?? ""}`,
        text: `Remove connection${handle ? ` (${handle})` : ""} to ${current}`,
        onclick: () => removeEdge(index),
      }));
    }
  }
  panel.append(group);
}

function setCheck(node, check) {
  change(() => {
    for (const key of CONDITION_KEYS) delete node.data[key];
    node.data.check = check;
    if (check === "opened" || check === "clicked") {
      const email = earlierEmail(node.id);
      if (email) node.data.node = email;
    } else if (check === "field") {
      node.data.op = "eq";
    } else if (check === "in_list" && data.lists[0]) {
      node.data.list_id = data.lists[0].id;
    }
  });
}

function setAction(node, what) {
  change(() => {
    for (const key of ACTION_KEYS) delete node.data[key];
    node.data.do = what;
    if ((what === "add_to_list" || what === "remove_from_list") && data.lists[0]) node.data.list_id = data.lists[0].id;
    if (what === "set_field") node.data.value = "";
  });
}

// The nearest email step before `id`, walking back through first parents.
function earlierEmail(id) {
  let current = id;
  for (let i = 0; i < graph.nodes.length; i += 1) {
    const parent = graph.edges.find((e) => e.target === current);
    if (!parent) break;
    const node = nodeOf(parent.source);
    if (node?.type === "email") return node.id;
    current = parent.source;
  }
  return graph.nodes.find((n) => n.type === "email")?.id;
}

// --- editing the structure ------------------------------------------------------------------
function newId(kind) {
  let n = 1;
  while (nodeOf(`${kind}_${n}`)) n += 1;
  return `${kind}_${n}`;
}

function defaults(kind, id) {
  switch (kind) {
    case "email": return {};
    case "delay": return { amount: 1, unit: "days" };
    case "wait_until": return { time: "09:00" };
    case "condition": {
      const email = earlierEmail(id);
      return email ? { check: "opened", node: email } : { check: "opened" };
    }
    case "split": return { weights: { a: 50, b: 50 } };
    case "action": return data.lists[0] ? { do: "add_to_list", list_id: data.lists[0].id } : { do: "unsubscribe" };
    default: return {};
  }
}

function addNode(kind) {
  const id = newId(kind);
  const after = selected?.node ? nodeOf(selected.node) : null;
  change(() => {
    graph.nodes.push({ id, type: kind, data: {} });
    if (after) {
      const free = handlesOf(after).find((h) => edgeOn(after.id, h) < 0);
      if (free !== undefined) graph.edges.push(newEdge(after.id, id, free));
    }
    nodeOf(id).data = defaults(kind, id);
    selected = { node: id };
    focusId = id;
  });
  focusNode(id);
}

function newEdge(source, target, handle) {
  let n = 1;
  while (graph.edges.some((e) => e.id === `e_${n}`)) n += 1;
  return { id: `e_${n}`, source, target, sourceHandle: handle ?? null };
}

function connect(source, handle, target) {
  change(() => {
    const index = edgeOn(source, handle);
    if (index >= 0) graph.edges.splice(index, 1);
    if (target && target !== source) graph.edges.push(newEdge(source, target, handle));
  });
}

function removeEdge(index) {
  const source = graph.edges[index]?.source;
  change(() => {
    graph.edges.splice(index, 1);
    selected = source ? { node: source } : null;
  });
  if (source) focusNode(source);
}

function removeNode(id) {
  const node = nodeOf(id);
  if (!node || node.type === "trigger") return;
  const parent = graph.edges.find((e) => e.target === id)?.source;
  change(() => {
    graph.nodes = graph.nodes.filter((n) => n.id !== id);
    graph.edges = graph.edges.filter((e) => e.source !== id && e.target !== id);
    selected = parent ? { node: parent } : null;
    focusId = parent ?? graph.nodes[0]?.id;
  });
  if (focusId) focusNode(focusId);
}

function choose(target) {
  selected = target;
  if (target?.node) focusId = target.node;
  render();
}

function focusNode(id) {
  canvas.querySelector(`.bnode[data-node="${CSS.escape(id)}"]`)?.focus();
}

// --- saving ---------------------------------------------------------------------------------
async function save() {
  let answer;
  try {
    if (!(await live.confirmSave(graph))) return;
    statusLine.textContent = "Saving…";
    answer = await fetch(data.save_url, {
      method: "PUT",
      headers: { "content-type": "application/json", "x-csrf-token": data.csrf_token },
      body: JSON.stringify(graph),
    });
  } catch {
    showProblems([{ node_id: null, message: "The server could not be reached; nothing was saved." }]);
    return;
  }
  if (answer.redirected) { // to the sign-in page: the session ended
    showProblems([{ node_id: null, message: "You were signed out. Sign in again in another tab, then save here." }]);
    return;
  }
  const body = await answer.json().catch(() => null);
  if (answer.ok && body?.saved) {
    graph = body.graph;
    saved = JSON.stringify(graph);
    shownShape = null;
    statusLine.dataset.saved = "Saved";
    showProblems([]);
    refreshStepsTable();
    return;
  }
  const found = body?.errors ?? [{ node_id: null, message: `Not saved: the server answered ${answer.status}.` }];
  showProblems(found);
}

function showProblems(found) {
  problems = found;
  render();
  errorBox.replaceChildren();
  errorBox.hidden = !found.length;
  if (!found.length) return;
  const items = el("ul");
  for (const problem of found) {
    const node = problem.node_id ? nodeOf(problem.node_id) : null;
    const text = node ? `${nameOf(node)}: ${problem.message}` : problem.message;
    items.append(el("li", {}, node
      ? el("a", {
        href: `#problem-${problem.node_id}`, text,
        onclick: (event) => { event.preventDefault(); choose({ node: node.id }); focusNode(node.id); },
      })
      : el("span", { text })));
  }
  errorBox.append(el("p", { text: "Not saved. Fix this and save again:" }), items);
  errorBox.focus();
}

// --- events ---------------------------------------------------------------------------------
let drag = null; // {id, dx, dy, moved, to} moving a step, or {from, handle, line} connecting
let suppressClick = false; // the click that ends a drag is not a selection

canvas.addEventListener("pointerdown", (event) => {
  const button = event.target.closest(".bnode");
  suppressClick = false;
  if (!button || event.button !== 0 || !editable) return;
  const node = nodeOf(button.dataset.node);
  const origin = canvas.getBoundingClientRect();
  const handleDot = event.target.closest(".bnode-handle");
  if (handleDot) {
    event.preventDefault();
    const handle = handleDot.dataset.handle || null;
    const sx = handleX(node, handle);
    const sy = place(node).y + HEIGHT;
    const line = svg("path", { class: "link-line pending", d: curve(sx, sy, sx, sy) });
    arrows.append(line);
    drag = { from: node.id, handle, line, sx, sy, origin };
    return;
  }
  const { x, y } = place(node);
  drag = { id: node.id, dx: event.clientX - origin.left - x, dy: event.clientY - origin.top - y, moved: false, origin, button };
});

window.addEventListener("pointermove", (event) => {
  if (!drag) return;
  const x = event.clientX - drag.origin.left;
  const y = event.clientY - drag.origin.top;
  if (drag.line) {
    drag.line.setAttribute("d", curve(drag.sx, drag.sy, x, y));
    return;
  }
  const left = Math.max(0, x - drag.dx);
  const top = Math.max(0, y - drag.dy);
  const start = place(nodeOf(drag.id));
  if (!drag.moved && Math.hypot(left - start.x, top - start.y) < 4) return;
  drag.moved = true;
  drag.to = { x: Math.round(left), y: Math.round(top) };
  drag.button.style.left = `${drag.to.x}px`;
  drag.button.style.top = `${drag.to.y}px`;
});

window.addEventListener("pointerup", (event) => {
  if (!drag) return;
  const done = drag;
  drag = null;
  if (done.line) {
    suppressClick = true;
    done.line.remove();
    const under = document.elementFromPoint(event.clientX, event.clientY)?.closest(".bnode");
    if (under && under.dataset.node !== done.from && nodeOf(under.dataset.node).type !== "trigger") {
      connect(done.from, done.handle, under.dataset.node);
      choose({ node: done.from });
    }
    return;
  }
  if (done.moved) {
    suppressClick = true;
    change(() => { nodeOf(done.id).position = done.to; });
    focusNode(done.id);
  }
});

canvas.addEventListener("click", (event) => {
  if (suppressClick) {
    suppressClick = false;
    return;
  }
  const button = event.target.closest(".bnode");
  if (button) {
    choose({ node: button.dataset.node });
    focusNode(button.dataset.node);
  } else if (!event.target.closest("g.link")) {
    choose(null); // a click on the background: nothing selected, a new step stands alone
  }
});

arrows.addEventListener("click", (event) => {
  const link = event.target.closest("g.link");
  if (link) choose({ edge: Number(link.dataset.edge) });
});

canvas.addEventListener("keydown", (event) => {
  const button = event.target.closest(".bnode");
  if (!button) return;
  if ((event.key === "Delete" || event.key === "Backspace") && editable) {
    event.preventDefault();
    removeNode(button.dataset.node);
    return;
  }
  const direction = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] }[event.key];
  if (!direction) return;
  event.preventDefault();
  const next = nearest(button.dataset.node, direction);
  if (next) choose({ node: next });
  if (next) focusNode(next);
});

// The step nearest to `id` in `direction`, preferring ones straight that way.
function nearest(id, [dx, dy]) {
  const from = place(nodeOf(id));
  let best = null;
  let bestScore = Infinity;
  for (const node of graph.nodes) {
    if (node.id === id) continue;
    const p = place(node);
    const along = (p.x - from.x) * dx + (p.y - from.y) * dy;
    if (along <= 0) continue;
    const across = Math.abs((p.x - from.x) * dy) + Math.abs((p.y - from.y) * dx);
    const score = along + 2 * across;
    if (score < bestScore) { bestScore = score; best = node.id; }
  }
  return best;
}

document.addEventListener("keydown", (event) => {
  // Keys pressed in the builder, or with nothing in particular focused (after a click on an arrow).
  if (!root.contains(event.target) && !event.target.contains(root)) return;
  if (event.key === "Delete" && selected?.edge !== undefined && editable && !event.target.closest("input, select, textarea")) {
    removeEdge(selected.edge);
    return;
  }
  if (!(event.ctrlKey || event.metaKey) || event.key.toLowerCase() !== "z" || !editable) return;
  if (event.target.closest("input, textarea")) return; // their own undo
  event.preventDefault();
  if (event.shiftKey) redo(); else undo();
});

root.addEventListener("click", (event) => {
  const adding = event.target.closest("[data-add]");
  if (adding) addNode(adding.dataset.add);
  const command = event.target.closest("[data-command]")?.dataset.command;
  if (command === "undo") undo();
  if (command === "redo") redo();
  if (command === "save") save();
  if (command === "tidy") change(() => { for (const node of graph.nodes) delete node.position; });
});

window.addEventListener("beforeunload", (event) => {
  if (editable && dirty()) {
    event.preventDefault();
    event.returnValue = "";
  }
});

// The table of steps under the drawing, as the server draws it for the graph just saved.
async function refreshStepsTable() {
  try {
    const answer = await fetch(window.location.pathname, { headers: { accept: "text/html" } });
    if (!answer.ok || answer.redirected) return;
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const fresh = page.querySelector("#steps tbody");
    if (fresh) document.querySelector("#steps tbody")?.replaceWith(document.adoptNode(fresh));
  } catch {
    // Offline for a moment: the table catches up on the next visit.
  }
}

// Searchable time zones for every wait-until step.
const zones = el("datalist", { id: "builder-zones" });
for (const zone of data.time_zones) zones.append(el("option", { value: zone }));
root.append(zones);

const live = startLive({
  data, el, nodeOf, nameOf, canvas, root, showProblems,
  graph: () => graph,
  savedGraph: () => JSON.parse(saved),
  rerender: () => render(),
});

document.querySelector(".graph-wrap")?.setAttribute("hidden", "");
root.hidden = false;
render();
