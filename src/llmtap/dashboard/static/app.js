// llmtap dashboard: the only script of ours (no inline script anywhere: the CSP forbids it).
// - adds the CSRF token to every htmx request
// - draws the uPlot charts from their data-chart attributes (JSON)
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
      if (unit === "ms") {
        if (Math.abs(v) >= 1000) return +(v / 1000).toFixed(2) + " s";
        return (v > 0 && v < 10 ? v.toFixed(1) : Math.round(v)) + " ms";
      }
      return v >= 1000 ? v.toLocaleString() : String(v);
    };
  }

  // A value between two gaps (null) has no line to draw: mark it with a point, or a bucket with
  // the only calls of the range would show nothing at all.
  function isolatedPoints(u, seriesIdx) {
    var values = u.data[seriesIdx], found = [];
    for (var i = 0; i < values.length; i++) {
      if (values[i] != null && values[i - 1] == null && values[i + 1] == null) found.push(i);
    }
    return found;
  }

  // wide enough for the longest tick label (a cost such as $0.0000050 is long)
  function axisSize(u, values) {
    var longest = 0;
    (values || []).forEach(function (v) { longest = Math.max(longest, String(v).length); });
    return Math.max(40, Math.ceil(longest * 7.2) + 16);
  }

  function drawCharts(root) {
    if (!window.uPlot) return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el._chart) return;
      var spec;
      try { spec = JSON.parse(el.getAttribute("data-chart")); } catch (e) { return; }
      el.textContent = "";
      var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
      var fmt = formatValue(spec.unit);
      var opts = {
        width: Math.max(200, el.clientWidth || 480),
        height: 200,
        series: [{}].concat(spec.series.map(function (s, i) {
          return {
            label: s.label, stroke: PALETTE[i % PALETTE.length], width: 1.5, value: fmt, spanGaps: false,
            points: { show: true, size: 5, fill: PALETTE[i % PALETTE.length], filter: isolatedPoints },
          };
        })),
        axes: [{}, { values: function (u, vals) { return vals.map(function (v) { return fmt(u, v); }); }, size: axisSize }],
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

  // ---- suggestions: a listbox under an input, filled by a lazy look-up ----------------------
  // Not a <datalist>: its popup is the browser's own (not rendered headless, inconsistent with
  // options added while it is open, no way to tell a pick from typing).
  var suggestSeq = 0;

  // source(text, done) for a look-up URL: the server answers escaped <option> elements; they
  // are parsed without running anything. params(text) gives the query, or null for none.
  function lookupSource(url, params) {
    var timer = null;
    return function (text, done) {
      clearTimeout(timer);
      var extra = params(text);
      if (!extra) { done([]); return; }
      timer = setTimeout(function () {
        var query = rangeParams();
        Object.keys(extra).forEach(function (k) { query.set(k, extra[k]); });
        fetch(url + "?" + query.toString(), { credentials: "same-origin", headers: { "HX-Request": "true" } })
          .then(function (r) { return r.ok ? r.text() : ""; })
          .then(function (html) {
            var doc = new DOMParser().parseFromString("<datalist>" + html + "</datalist>", "text/html");
            done(Array.prototype.map.call(doc.querySelectorAll("option"), function (o) {
              return o.getAttribute("value") || "";
            }));
          })
          .catch(function () { done([]); });
      }, 150);
    };
  }

  function Suggest(input, source, onPick) {
    var self = this;
    this.input = input; this.source = source; this.onPick = onPick; this.active = -1;
    this.list = el("ul", { "class": "suggest", role: "listbox", id: "suggest-" + (++suggestSeq) });
    this.list.hidden = true;
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", this.list.id);
    input.setAttribute("autocomplete", "off");
    this.wrap = el("span", { "class": "suggest-wrap" }, [input, this.list]);
    input.addEventListener("input", function () { self.refresh(); });
    input.addEventListener("focus", function () { self.refresh(); });
    input.addEventListener("blur", function () { self.hide(); });
    input.addEventListener("keydown", function (event) { self.key(event); });
    this.list.addEventListener("mousedown", function (event) {
      event.preventDefault();  // keep the focus (and the caret) in the input
      var item = event.target.closest("li");
      if (item) self.pick(item.textContent);
    });
  }

  Suggest.prototype.refresh = function () {
    var self = this, asked = this.input.value;
    this.source(asked, function (values) {
      // an answer to older text, or after the input lost the focus, is stale
      if (self.input.value === asked && document.activeElement === self.input) self.show(values);
    });
  };

  Suggest.prototype.show = function (values) {
    var list = this.list;
    list.textContent = "";
    this.active = -1;
    values.forEach(function (v) { list.appendChild(el("li", { role: "option", "aria-selected": "false", text: v })); });
    list.hidden = values.length === 0;
    this.input.setAttribute("aria-expanded", String(!list.hidden));
  };

  Suggest.prototype.hide = function () {
    this.list.hidden = true;
    this.input.setAttribute("aria-expanded", "false");
  };

  Suggest.prototype.move = function (step) {
    var items = this.list.children;
    if (!items.length) return;
    if (this.active >= 0) items[this.active].setAttribute("aria-selected", "false");
    this.active = (this.active + step + items.length) % items.length;
    items[this.active].setAttribute("aria-selected", "true");
    items[this.active].scrollIntoView({ block: "nearest" });
  };

  Suggest.prototype.key = function (event) {
    if (this.list.hidden) {
      if (event.key === "ArrowDown") { event.preventDefault(); this.refresh(); }
      return;
    }
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      this.move(event.key === "ArrowDown" ? 1 : -1);
    } else if (event.key === "Enter" && this.active >= 0) {
      event.preventDefault();  // a pick, not a submit
      this.pick(this.list.children[this.active].textContent);
    } else if (event.key === "Escape") {
      this.hide();
    }
  };

  Suggest.prototype.pick = function (value) {
    this.input.value = value;
    this.hide();
    this.onPick();
  };

  function Builder(root, textarea, spec) {
    this.root = root; this.textarea = textarea; this.spec = spec;
    var names = Object.keys(spec.fields);
    var properties = lookupSource("/ui/properties", function (text) {
      return { q: text.replace(/^properties\./, "") };
    });
    // the fields containing the text, then the custom properties whose names contain it
    this.fieldSource = function (text, done) {
      var lower = text.toLowerCase();
      var known = names.filter(function (n) { return n.indexOf(lower) >= 0; });
      if (spec.fields[text]) { done(known); return; }
      properties(text, function (found) { done(known.concat(found)); });
    };
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
    var self = this;
    var field = el("input", { "class": "field", value: leaf.field || "", "aria-label": "field", spellcheck: "false" });
    var op = el("select", { "aria-label": "operator" });
    var shown = Array.isArray(leaf.value) ? leaf.value.join(", ") : (leaf.value === undefined ? "" : String(leaf.value));
    var value = el("input", { "class": "value", value: shown, "aria-label": "value", spellcheck: "false" });
    function fillOps() {
      var current = op.value || leaf.op || "eq";
      op.textContent = "";
      self.opsOf(field.value).forEach(function (o) { op.appendChild(el("option", { value: o, text: o })); });
      op.value = self.opsOf(field.value).indexOf(current) >= 0 ? current : self.opsOf(field.value)[0];
    }
    fillOps();
    var values = lookupSource("/ui/property-values", function (text) {
      return field.value.indexOf("properties.") === 0 ? { name: field.value, q: text } : null;
    });
    var fieldBox = new Suggest(field, this.fieldSource, function () { fillOps(); self.save(); });
    var valueBox = new Suggest(value, values, function () { self.save(); });
    field.addEventListener("input", fillOps);
    [field, op, value].forEach(function (input) { input.addEventListener("change", function () { self.save(); }); });
    var remove = el("button", { type: "button", "class": "small", text: "×", title: "remove condition" });
    var row = el("div", { "class": "cond" }, [fieldBox.wrap, op, valueBox.wrap, remove]);
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
