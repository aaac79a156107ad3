// llmtap dashboard: the only script of ours (no inline script anywhere: the CSP forbids it).
// - adds the CSRF token to every htmx request
// - draws the uPlot charts from <script type="application/json"> blocks
// - live refresh of the Overview's panels (off by default)
// - clickable table rows
// - the filter builder: and/or trees over every field and property, kept in the form's `f`
"use strict";
(function () {
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // ---- charts -------------------------------------------------------------------------------
  var PALETTE = ["#2f6fde", "#c4302b", "#2c8a4b", "#b07d2b", "#8a4bc4"];

  function readJson(id) {
    var el = document.getElementById(id);
    if (!el) return null;
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function formatValue(unit) {
    return function (u, v) {
      if (v == null) return "—";
      if (unit === "usd") return "$" + (v < 0.01 && v > 0 ? v.toPrecision(2) : v.toFixed(2));
      if (unit === "ms") return Math.round(v) + " ms";
      return v >= 1000 ? v.toLocaleString() : String(v);
    };
  }

  function drawCharts(root) {
    if (!window.uPlot) return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el._chart) return;
      var spec = readJson(el.getAttribute("data-chart"));
      if (!spec) return;
      el.textContent = "";
      var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
      var fmt = formatValue(spec.unit);
      var opts = {
        width: Math.max(200, el.clientWidth || 480),
        height: 200,
        series: [{}].concat(spec.series.map(function (s, i) {
          return { label: s.label, stroke: PALETTE[i % PALETTE.length], width: 1.5, value: fmt, spanGaps: false };
        })),
        axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return fmt(u, v); }); }, size: 70 }],
        scales: { x: { time: true } },
      };
      el._chart = new window.uPlot(opts, data, el);
    });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      document.querySelectorAll("[data-chart]").forEach(function (el) {
        if (el._chart) el._chart.setSize({ width: el.clientWidth, height: 200 });
      });
    }, 150);
  });

  // ---- live refresh -------------------------------------------------------------------------
  var liveTimer = null;
  function setLive(box) {
    clearInterval(liveTimer);
    liveTimer = null;
    if (!box.checked) return;
    var seconds = parseInt(box.getAttribute("data-interval-s"), 10) || 10;
    liveTimer = setInterval(function () {
      if (document.hidden || !window.htmx) return;
      window.htmx.ajax("GET", window.location.pathname + window.location.search,
        { target: "#panels", swap: "outerHTML" });
    }, seconds * 1000);
  }

  // ---- rows ---------------------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("tr[data-href]");
    if (!row || event.target.closest("a, button, input")) return;
    var href = row.getAttribute("data-href");
    if (href && href.charAt(0) === "/" && href.charAt(1) !== "/") window.location.assign(href);
  });

  // ---- filter builder -----------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k]; else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  function rangeParams() {
    var params = new URLSearchParams(window.location.search);
    var keep = new URLSearchParams();
    ["range", "start", "end"].forEach(function (k) { if (params.get(k)) keep.set(k, params.get(k)); });
    return keep;
  }

  var lookupTimer = null;
  function lookup(url, params, list) {
    clearTimeout(lookupTimer);
    lookupTimer = setTimeout(function () {
      var query = rangeParams();
      Object.keys(params).forEach(function (k) { query.set(k, params[k]); });
      fetch(url + "?" + query.toString(), { credentials: "same-origin", headers: { "HX-Request": "true" } })
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (html) {
          // the server's answer is escaped <option> elements; parse it without running anything
          var doc = new DOMParser().parseFromString("<datalist>" + html + "</datalist>", "text/html");
          list.querySelectorAll("option.fetched").forEach(function (o) { o.remove(); });
          doc.querySelectorAll("option").forEach(function (o) {
            list.appendChild(el("option", { value: o.getAttribute("value") || "", "class": "fetched" }));
          });
        })
        .catch(function () {});
    }, 200);
  }

  function Builder(root, textarea, spec) {
    this.root = root; this.textarea = textarea; this.spec = spec; this.seq = 0;
    var fieldList = el("datalist", { id: "builder-fields" });
    Object.keys(spec.fields).forEach(function (name) { fieldList.appendChild(el("option", { value: name })); });
    this.fieldList = fieldList;
    this.load();
  }

  Builder.prototype.kindOf = function (field) {
    if (field.indexOf("properties.") === 0) return "str";
    var f = this.spec.fields[field];
    return f ? f.kind : null;
  };

  Builder.prototype.opsOf = function (field) {
    if (field.indexOf("properties.") === 0) return this.spec.property_ops;
    var f = this.spec.fields[field];
    return f ? f.ops : ["eq"];
  };

  Builder.prototype.load = function () {
    var text = this.textarea.value.trim(), tree = null;
    if (text) {
      try { tree = JSON.parse(text); } catch (e) {
        this.root.textContent = "The filter is not valid JSON: edit it below.";
        return;
      }
    }
    if (!tree) tree = { and: [] };
    if (!tree.and && !tree.or) tree = { and: [tree] };
    this.root.textContent = "";
    this.root.appendChild(this.fieldList);
    this.top = this.group(tree);
    this.root.appendChild(this.top);
  };

  Builder.prototype.group = function (node) {
    var self = this, op = node.or ? "or" : "and";
    var box = el("div", { "class": "group" });
    var select = el("select", { "aria-label": "match" }, [
      el("option", { value: "and", text: "all of" }), el("option", { value: "or", text: "any of" })]);
    select.value = op;
    select.addEventListener("change", function () { self.save(); });
    var items = el("div", { "class": "items" });
    (node[op] || []).forEach(function (child) {
      items.appendChild(child.and || child.or ? self.group(child) : self.cond(child));
    });
    var addCond = el("button", { type: "button", "class": "small", text: "+ condition" });
    addCond.addEventListener("click", function () { items.appendChild(self.cond({ field: "model", op: "eq", value: "" })); });
    var addGroup = el("button", { type: "button", "class": "small", text: "+ group" });
    addGroup.addEventListener("click", function () { items.appendChild(self.group({ or: [{ field: "model", op: "eq", value: "" }] })); });
    var bar = el("div", { "class": "cond" }, [select, addCond, addGroup]);
    if (this.top) {
      var remove = el("button", { type: "button", "class": "small", text: "×", title: "remove group" });
      remove.addEventListener("click", function () { box.remove(); self.save(); });
      bar.appendChild(remove);
    }
    box.appendChild(bar);
    box.appendChild(items);
    box._select = select; box._items = items;
    return box;
  };

  Builder.prototype.cond = function (leaf) {
    var self = this, id = "builder-values-" + (++this.seq);
    var field = el("input", { "class": "field", list: "builder-fields", value: leaf.field || "", "aria-label": "field", spellcheck: "false" });
    var op = el("select", { "aria-label": "operator" });
    var values = el("datalist", { id: id });
    var shown = Array.isArray(leaf.value) ? leaf.value.join(", ") : (leaf.value === undefined ? "" : String(leaf.value));
    var value = el("input", { "class": "value", list: id, value: shown, "aria-label": "value", spellcheck: "false" });
    function fillOps() {
      var current = op.value || leaf.op || "eq";
      op.textContent = "";
      self.opsOf(field.value).forEach(function (o) { op.appendChild(el("option", { value: o, text: o })); });
      op.value = self.opsOf(field.value).indexOf(current) >= 0 ? current : self.opsOf(field.value)[0];
    }
    fillOps();
    field.addEventListener("input", function () {
      var typed = field.value;
      if (!self.spec.fields[typed]) lookup("/ui/properties", { q: typed.replace(/^properties\./, "") }, self.fieldList);
      fillOps();
    });
    value.addEventListener("input", function () {
      if (field.value.indexOf("properties.") === 0)
        lookup("/ui/property-values", { name: field.value, q: value.value }, values);
    });
    value.addEventListener("focus", function () {
      if (field.value.indexOf("properties.") === 0)
        lookup("/ui/property-values", { name: field.value, q: value.value }, values);
    });
    [field, op, value].forEach(function (input) { input.addEventListener("change", function () { self.save(); }); });
    var remove = el("button", { type: "button", "class": "small", text: "×", title: "remove condition" });
    var row = el("div", { "class": "cond" }, [field, op, value, values, remove]);
    remove.addEventListener("click", function () { row.remove(); self.save(); });
    row._parts = { field: field, op: op, value: value };
    return row;
  };

  Builder.prototype.typed = function (field, op, raw) {
    var kind = this.kindOf(field);
    function one(text) {
      text = text.trim();
      if (kind === "int" || kind === "float" || kind === "cost") {
        var n = Number(text);
        return text !== "" && !isNaN(n) ? n : text;
      }
      if (kind === "bool") return text === "true";
      return text;
    }
    if (op === "exists") return raw.trim() !== "false";
    if (op === "in") return raw.split(",").map(one).filter(function (v) { return v !== ""; });
    return one(raw);
  };

  Builder.prototype.tree = function (box) {
    var self = this, items = [];
    Array.prototype.forEach.call(box._items.children, function (child) {
      if (child._items) {
        var sub = self.tree(child);
        if (sub) items.push(sub);
      } else if (child._parts) {
        var p = child._parts, field = p.field.value.trim();
        if (!field) return;
        if (p.value.value.trim() === "" && p.op.value !== "exists") return;
        items.push({ field: field, op: p.op.value, value: self.typed(field, p.op.value, p.value.value) });
      }
    });
    if (!items.length) return null;
    var out = {};
    out[box._select.value] = items;
    return items.length === 1 && box === this.top && box._select.value === "and" ? items[0] : out;
  };

  Builder.prototype.save = function () {
    var tree = this.tree(this.top);
    this.textarea.value = tree ? JSON.stringify(tree) : "";
  };

  function setUp(root) {
    drawCharts(root);
    root.querySelectorAll("[data-live-refresh]").forEach(function (box) {
      box.addEventListener("change", function () { setLive(box); });
      setLive(box);
    });
    var spec = readJson("filter-fields");
    root.querySelectorAll("form[data-filter-form]").forEach(function (form) {
      var builderRoot = form.querySelector("[data-builder]");
      var textarea = form.querySelector("[data-filter-json]");
      if (!spec || !builderRoot || !textarea) return;
      var builder = new Builder(builderRoot, textarea, spec);
      textarea.addEventListener("change", function () { builder.load(); });
      form.addEventListener("submit", function () {
        if (builder.top) builder.save();
        // keep the URL short: leave out empty fields
        form.querySelectorAll("input[name], textarea[name]").forEach(function (input) {
          if (!input.value) input.removeAttribute("name");
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () { setUp(document); });
  document.addEventListener("htmx:afterSettle", function () { drawCharts(document); });
})();

// ---- keys page (d-pages): select the new key when its box is focused, for copying ----------
(function () {
  "use strict";
  function selectNewKey(event) {
    var box = event.target;
    if (box && box.matches && box.matches("input[data-select-on-focus]")) box.select();
  }
  document.addEventListener("focusin", selectNewKey);
})();
