// The studio editor (templates/studio/edit.html): one tab per file of the draft — the .bpmn in bpmn-js's Modeler
// (global BpmnJS) with our properties panel for the spiffworkflow extensions, each .dmn in dmn-js's Modeler (global
// DmnJS) on its decision table, each form's JSON Schema (and UI schema) as text with a live preview drawn by the
// server. Save (Ctrl+S), Check (problems listed and marked on the diagram), Replay, Download and Deploy talk to the
// URLs in #studio-data; the page's texts come from #studio-texts.
(function () {
  "use strict";

  var SPIFF_URI = "http://spiffworkflow.org/bpmn/schema/1.0/core";
  // The moddle extension for the elements Lvyue's processes use (bpmn/README.md), so they load, can be edited and
  // are written back unchanged.
  var SPIFF_MODDLE = {
    name: "SpiffWorkflow", uri: SPIFF_URI, prefix: "spiffworkflow", xml: { tagAlias: "lowerCase" },
    types: [
      { name: "Properties", superClass: ["Element"],
        properties: [{ name: "properties", type: "Property", isMany: true }] },
      { name: "Property", superClass: ["Element"],
        properties: [{ name: "name", type: "String", isAttr: true }, { name: "value", type: "String", isAttr: true }] },
      { name: "InstructionsForEndUser", superClass: ["Element"], properties: [{ name: "text", type: "String", isBody: true }] },
      { name: "PreScript", superClass: ["Element"], properties: [{ name: "text", type: "String", isBody: true }] },
      { name: "PostScript", superClass: ["Element"], properties: [{ name: "text", type: "String", isBody: true }] },
      { name: "CalledDecisionId", superClass: ["Element"], properties: [{ name: "text", type: "String", isBody: true }] }
    ]
  };
  var ID_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

  function readJSON(id) {
    var node = document.getElementById(id);
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  }

  var DATA = readJSON("studio-data");
  var T = readJSON("studio-texts");
  var root = document.getElementById("studio-editor");
  if (!root || !DATA.draft) { return; }

  function t(key, vars) {
    var text = T[key] || key;
    Object.keys(vars || {}).forEach(function (k) { text = text.split("%(" + k + ")s").join(String(vars[k])); });
    return text;
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) { return; }
      if (k === "text") { node.textContent = v; } else if (k === "className") { node.className = v; } else { node.setAttribute(k, v === true ? "" : v); }
    });
    (children || []).forEach(function (c) { if (c) { node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); } });
    return node;
  }

  function $(sel) { return root.querySelector(sel); }

  // ---------------------------------------------------------------- state
  var files = Object.assign({}, DATA.draft.files || {});
  var revision = DATA.draft.revision || 0;
  var changeSeq = 0;      // bumped on every edit
  var savedSeq = 0;       // changeSeq at the last successful save
  var leaving = false;    // a navigation we started ourselves (deploy, replay): no "unsaved changes" prompt
  var tabs = [];          // {name, kind: bpmn|dmn|form|json, button, pane, modeler, ...}
  var lastProblems = DATA.problems || [];

  var statusNode = $("[data-status]");
  var dirtyNode = $("[data-dirty]");
  var deployForm = $("[data-deploy-form]");

  function status(text, isError) {
    statusNode.textContent = text || "";
    statusNode.classList.toggle("is-error", !!isError);
  }

  function isDirty() { return changeSeq !== savedSeq; }
  function changed() {
    changeSeq += 1;
    dirtyNode.hidden = false;
  }
  function refreshDirty() { dirtyNode.hidden = !isDirty(); }

  window.addEventListener("beforeunload", function (event) {
    if (isDirty() && !leaving) {
      event.preventDefault();
      event.returnValue = t("leave");
      return t("leave");
    }
    return undefined;
  });

  // ---------------------------------------------------------------- HTTP
  function postJSON(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRFToken": DATA.csrf_token },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { status: response.status, ok: response.ok, data: data || {} };
      });
    });
  }

  function errorText(data) {
    var parts = [data.error || ""];
    Object.keys(data.fields || {}).forEach(function (k) { parts.push(k + ": " + data.fields[k]); });
    return parts.filter(Boolean).join(" · ");
  }

  // ---------------------------------------------------------------- tabs
  var tabBar = $("[data-tabs]");
  var panes = $("[data-panes]");

  function baseOf(name) { return name.replace(/\.schema\.json$/, ""); }
  function schemaFiles() { return Object.keys(files).filter(function (n) { return /\.schema\.json$/.test(n); }).sort(); }

  function tabFor(name) {
    return tabs.filter(function (tab) { return tab.name === name || tab.uiName === name; })[0] || null;
  }

  function addTab(name, kind) {
    var label = kind === "form" ? baseOf(name) : name;
    var kindText = kind === "bpmn" ? t("diagram") : kind === "dmn" ? t("decision_table") : kind === "form" ? t("form") : "";
    var button = el("button", { type: "button", role: "tab", "aria-selected": "false", "data-tab": name },
                    [label, kindText ? el("span", { className: "tab-kind", text: kindText }) : null]);
    var pane = el("div", { className: "studio-pane", role: "tabpanel", hidden: true, "data-pane": name });
    var tab = { name: name, kind: kind, button: button, pane: pane, ready: null };
    if (kind === "form") { tab.uiName = baseOf(name) + ".uischema.json"; }
    button.addEventListener("click", function () { activate(tab); });
    tabBar.appendChild(button);
    panes.appendChild(pane);
    tabs.push(tab);
    return tab;
  }

  function activate(tab) {
    tabs.forEach(function (other) {
      var on = other === tab;
      other.button.setAttribute("aria-selected", on ? "true" : "false");
      other.pane.hidden = !on;
    });
    if (!tab.ready) {
      tab.ready = tab.kind === "bpmn" ? initBpmn(tab) : tab.kind === "dmn" ? initDmn(tab)
        : tab.kind === "form" ? initForm(tab) : initJson(tab);
    }
    return tab.ready;
  }

  function buildTabs() {
    var names = Object.keys(files).sort();
    var uiNames = {};
    names.filter(function (n) { return /\.bpmn$/.test(n); }).forEach(function (n) { addTab(n, "bpmn"); });
    names.filter(function (n) { return /\.dmn$/.test(n); }).forEach(function (n) { addTab(n, "dmn"); });
    schemaFiles().forEach(function (n) { addTab(n, "form"); uiNames[baseOf(n) + ".uischema.json"] = true; });
    names.filter(function (n) { return /\.json$/.test(n) && !/\.schema\.json$/.test(n) && !uiNames[n]; })
      .forEach(function (n) { addTab(n, "json"); });
  }

  // ---------------------------------------------------------------- BPMN
  function initBpmn(tab) {
    var wrap = el("div", { className: "studio-bpmn" });
    var canvasDiv = el("div", { className: "studio-canvas", "data-bpmn-canvas": tab.name });
    var props = el("aside", { className: "studio-props", "aria-label": t("properties"), "data-props": "" });
    wrap.appendChild(canvasDiv);
    wrap.appendChild(props);
    tab.pane.appendChild(wrap);
    if (typeof window.BpmnJS !== "function") {
      failed(tab, "bpmn-js");
      return Promise.resolve();
    }
    var modeler = new window.BpmnJS({ container: canvasDiv, moddleExtensions: { spiffworkflow: SPIFF_MODDLE } });
    tab.modeler = modeler;
    tab.markers = [];
    return modeler.importXML(files[tab.name]).then(function () {
      var canvas = modeler.get("canvas");
      canvas.zoom("fit-viewport");
      if (canvas.zoom() < 0.6) {  // a long process: start readable at its left end, scroll to see the rest
        var box = canvas.viewbox();
        var outer = box.outer;
        canvas.viewbox({ x: box.inner.x - 20, y: box.inner.y - 20, width: outer.width / 0.6, height: outer.height / 0.6 });
      }
      var eventBus = modeler.get("eventBus");
      eventBus.on("commandStack.changed", function (event) {
        if (event && event.trigger === "clear") { return; }
        changed();
      });
      var panel = new PropsPanel(tab, props);
      tab.panel = panel;
      eventBus.on("selection.changed", function (event) { panel.show(event.newSelection[0] || null); });
      eventBus.on("elements.changed", function (event) {
        if (panel.element && event.elements.indexOf(panel.element) >= 0 && !props.contains(document.activeElement)) {
          panel.show(panel.element);
        }
      });
      panel.show(null);
      canvasDiv.setAttribute("data-ready", "1");
      markTab(tab);
    }).catch(function (err) {
      failed(tab, err && err.message);
    });
  }

  function failed(tab, message) {
    tab.failed = true;
    tab.pane.textContent = "";
    tab.pane.appendChild(el("p", { className: "studio-failed", role: "alert", text: t("xml_error") + " " + (message || "") }));
  }

  // spiffworkflow extension helpers: bo is the business object holding the extension (an element's, or the process)
  function extValues(bo) { return (bo.extensionElements && bo.extensionElements.values) || []; }
  function ofType(bo, type) { return extValues(bo).filter(function (v) { return v.$type === type; })[0] || null; }
  function getProp(bo, name) {
    var holder = ofType(bo, "spiffworkflow:Properties");
    var prop = holder && (holder.properties || []).filter(function (p) { return p.name === name; })[0];
    return prop ? (prop.value || "") : "";
  }
  function getText(bo, type) { var node = ofType(bo, type); return node ? (node.text || "") : ""; }

  function Extensions(modeler) {
    var modeling = modeler.get("modeling");
    var moddle = modeler.get("moddle");
    function ensureExt(element, bo) {
      if (bo.extensionElements) { return bo.extensionElements; }
      var ext = moddle.create("bpmn:ExtensionElements", { values: [] });
      ext.$parent = bo;
      modeling.updateModdleProperties(element, bo, { extensionElements: ext });
      return ext;
    }
    this.setProp = function (element, bo, name, value) {
      value = (value || "").trim();
      var holder = ofType(bo, "spiffworkflow:Properties");
      var existing = holder && (holder.properties || []).filter(function (p) { return p.name === name; })[0];
      if (existing) {
        if (value === (existing.value || "")) { return; }
        if (value) { modeling.updateModdleProperties(element, existing, { value: value }); }
        else {
          modeling.updateModdleProperties(element, holder,
            { properties: holder.properties.filter(function (p) { return p !== existing; }) });
        }
        return;
      }
      if (!value) { return; }
      var ext = ensureExt(element, bo);
      if (!holder) {
        holder = moddle.create("spiffworkflow:Properties", { properties: [] });
        holder.$parent = ext;
        modeling.updateModdleProperties(element, ext, { values: ext.get("values").concat([holder]) });
      }
      var prop = moddle.create("spiffworkflow:Property", { name: name, value: value });
      prop.$parent = holder;
      modeling.updateModdleProperties(element, holder, { properties: (holder.properties || []).concat([prop]) });
    };
    this.setText = function (element, bo, type, text) {
      var existing = ofType(bo, type);
      if (existing) {
        if (text === (existing.text || "")) { return; }
        if (text) { modeling.updateModdleProperties(element, existing, { text: text }); }
        else {
          modeling.updateModdleProperties(element, bo.extensionElements,
            { values: bo.extensionElements.values.filter(function (v) { return v !== existing; }) });
        }
        return;
      }
      if (!text) { return; }
      var ext = ensureExt(element, bo);
      var node = moddle.create(type, { text: text });
      node.$parent = ext;
      modeling.updateModdleProperties(element, ext, { values: ext.get("values").concat([node]) });
    };
  }

  function is(bo, type) { return bo && typeof bo.$instanceOf === "function" && bo.$instanceOf(type); }

  function decisionIds() {
    var ids = [];
    Object.keys(files).filter(function (n) { return /\.dmn$/.test(n); }).forEach(function (n) {
      try {
        var doc = new DOMParser().parseFromString(files[n], "application/xml");
        Array.prototype.forEach.call(doc.getElementsByTagNameNS("*", "decision"), function (d) {
          if (d.getAttribute("id")) { ids.push(d.getAttribute("id")); }
        });
      } catch (e) { /* a broken DMN offers no ids */ }
    });
    return ids;
  }

  // Our properties panel: what Lvyue reads from each kind of element (bpmn/README.md).
  function PropsPanel(tab, node) {
    this.tab = tab;
    this.node = node;
    this.element = null;
    this.modeler = tab.modeler;
    this.ext = new Extensions(tab.modeler);
  }

  PropsPanel.prototype.field = function (labelText, control, help, id) {
    var wrap = el("div", { className: "prop-field", "data-field": id || "" });
    var controlId = "prop-" + (id || Math.random().toString(36).slice(2));
    control.id = controlId;
    if (control.type === "checkbox") {
      wrap.appendChild(el("label", { className: "inline", "for": controlId }, [control, labelText]));
    } else {
      wrap.appendChild(el("label", { "for": controlId, text: labelText }));
      wrap.appendChild(control);
    }
    if (help) { wrap.appendChild(el("p", { className: "prop-help", text: help })); }
    this.node.appendChild(wrap);
    return wrap;
  };

  PropsPanel.prototype.input = function (labelText, value, onChange, opts) {
    opts = opts || {};
    var control = opts.multiline ? el("textarea", { rows: opts.rows || 5, spellcheck: "false" }) : el("input", { type: "text" });
    control.value = value || "";
    if (opts.list) { control.setAttribute("list", opts.list); }
    control.addEventListener("change", function () { onChange(control.value, control); });
    return this.field(labelText, control, opts.help, opts.id);
  };

  PropsPanel.prototype.select = function (labelText, value, options, onChange, id) {
    var control = el("select");
    var known = false;
    options.forEach(function (o) {
      var opt = el("option", { value: o.value, text: o.label });
      if (o.value === value) { opt.selected = true; known = true; }
      control.appendChild(opt);
    });
    if (!known && value) {
      var extra = el("option", { value: value, text: value });
      extra.selected = true;
      control.insertBefore(extra, control.firstChild.nextSibling);
    }
    control.addEventListener("change", function () { onChange(control.value, control); });
    return this.field(labelText, control, null, id);
  };

  PropsPanel.prototype.checkbox = function (labelText, checked, onChange, id) {
    var control = el("input", { type: "checkbox" });
    control.checked = !!checked;
    control.addEventListener("change", function () { onChange(control.checked, control); });
    return this.field(labelText, control, null, id);
  };

  PropsPanel.prototype.show = function (element) {
    var self = this;
    var node = this.node;
    this.element = element;
    node.textContent = "";
    node.appendChild(el("h3", { text: t("properties") }));
    if (!element || element.type === "label") {
      if (element && element.labelTarget) { return this.show(element.labelTarget); }
      node.appendChild(el("p", { className: "muted", text: t("nothing_selected") }));
      return;
    }
    var modeling = this.modeler.get("modeling");
    var registry = this.modeler.get("elementRegistry");
    var bo = element.businessObject;
    node.setAttribute("data-element-id", element.id);
    node.appendChild(el("p", { className: "prop-type", text: bo.$type.replace(/^bpmn:/, "") }));

    // id
    var idWrap = this.input(t("id"), bo.id, function (value, control) {
      value = value.trim();
      var error = idWrap.querySelector(".prop-error");
      if (error) { error.remove(); }
      if (value === bo.id) { return; }
      var message = !ID_RE.test(value) ? t("id_invalid") : registry.get(value) ? t("id_taken") : null;
      if (message) {
        idWrap.appendChild(el("p", { className: "prop-error", role: "alert", text: message }));
        control.focus();
        return;
      }
      modeling.updateProperties(element, { id: value });
      self.show(registry.get(value) || element);
    }, { id: "id" });
    // name
    this.input(t("name"), bo.name, function (value) {
      modeling.updateProperties(element, { name: value || undefined });
    }, { id: "name", multiline: false });

    var ext = this.ext;
    var setProp = function (name) { return function (value) { ext.setProp(element, bo, name, value); }; };

    if (is(bo, "bpmn:Lane")) {
      var roles = [{ value: "", label: t("no_role") }].concat((DATA.roles || []).map(function (r) {
        return { value: r.code, label: r.label + " (" + r.code + ")" };
      }));
      this.select(t("role"), getProp(bo, "role"), roles, setProp("role"), "role");
    } else if (is(bo, "bpmn:UserTask")) {
      this.formSelect(element, bo);
      this.input(t("instructions"), getText(bo, "spiffworkflow:InstructionsForEndUser"), function (value) {
        ext.setText(element, bo, "spiffworkflow:InstructionsForEndUser", value);
      }, { multiline: true, rows: 6, id: "instructions" });
      this.dueFields(element, bo);
      var stages = [{ value: "", label: t("no_stage") }].concat((DATA.stages || []).map(function (s) {
        return { value: s.code, label: s.label };
      }));
      this.select(t("stage"), getProp(bo, "stage"), stages, setProp("stage"), "stage");
      this.input(t("four_eyes"), getProp(bo, "fourEyesExclude"), setProp("fourEyesExclude"), { id: "fourEyesExclude" });
      this.checkbox(t("returnable"), getProp(bo, "returnable") !== "false", function (checked) {
        ext.setProp(element, bo, "returnable", checked ? "" : "false");
      }, "returnable");
      this.input(t("pre_script"), getText(bo, "spiffworkflow:PreScript"), function (value) {
        ext.setText(element, bo, "spiffworkflow:PreScript", value);
      }, { multiline: true, rows: 3, id: "preScript" });
      this.input(t("post_script"), getText(bo, "spiffworkflow:PostScript"), function (value) {
        ext.setText(element, bo, "spiffworkflow:PostScript", value);
      }, { multiline: true, rows: 3, id: "postScript" });
    } else if (is(bo, "bpmn:StartEvent")) {
      var forms = [{ value: "", label: t("no_form") }].concat(schemaFiles().map(function (n) { return { value: n, label: n }; }));
      this.select(t("start_form"), getProp(bo, "formJsonSchemaFilename"), forms, function (value) {
        ext.setProp(element, bo, "formJsonSchemaFilename", value);
        var ui = value ? baseOf(value) + ".uischema.json" : "";
        ext.setProp(element, bo, "formUiSchemaFilename", ui && files[ui] !== undefined ? ui : "");
      }, "startForm");
      this.input(t("starter_roles"), getProp(bo, "starterRoles"), setProp("starterRoles"), { id: "starterRoles" });
    } else if (is(bo, "bpmn:EndEvent")) {
      this.input(t("outcome"), getProp(bo, "outcome"), setProp("outcome"), { id: "outcome" });
    } else if (is(bo, "bpmn:SequenceFlow")) {
      var cond = bo.conditionExpression ? (bo.conditionExpression.body || "") : "";
      var moddle = this.modeler.get("moddle");
      this.input(t("condition"), cond, function (value) {
        value = value.trim();
        modeling.updateProperties(element, {
          conditionExpression: value ? moddle.create("bpmn:FormalExpression", { body: value }) : undefined
        });
      }, { multiline: true, rows: 3, id: "condition" });
      var source = element.source;
      var sbo = source && source.businessObject;
      if (is(sbo, "bpmn:ExclusiveGateway") || is(sbo, "bpmn:InclusiveGateway")) {
        this.checkbox(t("default_flow"), sbo.default === bo, function (checked) {
          if (checked) {
            if (bo.conditionExpression) { modeling.updateProperties(element, { conditionExpression: undefined }); }
            modeling.updateProperties(source, { "default": bo });
          } else if (sbo.default === bo) {
            modeling.updateProperties(source, { "default": undefined });
          }
          self.show(element);
        }, "default");
      }
    } else if (is(bo, "bpmn:BusinessRuleTask")) {
      var listId = "studio-decisions";
      var list = document.getElementById(listId) || document.body.appendChild(el("datalist", { id: listId }));
      list.textContent = "";
      decisionIds().forEach(function (id) { list.appendChild(el("option", { value: id })); });
      this.input(t("decision"), getText(bo, "spiffworkflow:CalledDecisionId"), function (value) {
        ext.setText(element, bo, "spiffworkflow:CalledDecisionId", value.trim());
      }, { id: "calledDecisionId", list: listId });
    } else if (is(bo, "bpmn:ScriptTask")) {
      this.input(t("script"), bo.script || "", function (value) {
        modeling.updateProperties(element, { script: value || undefined });
      }, { multiline: true, rows: 10, id: "script" });
    } else if (is(bo, "bpmn:Participant") && bo.processRef) {
      this.input(t("return_barriers"), getProp(bo.processRef, "returnBarriers"), function (value) {
        ext.setProp(element, bo.processRef, "returnBarriers", value);
      }, { id: "returnBarriers" });
    }
    return undefined;
  };

  PropsPanel.prototype.formSelect = function (element, bo) {
    var ext = this.ext;
    var self = this;
    var current = getProp(bo, "formJsonSchemaFilename");
    var options = [{ value: "", label: t("no_form") }]
      .concat(schemaFiles().map(function (n) { return { value: n, label: n }; }))
      .concat([{ value: "__new__", label: t("new_form") }]);
    var wrap = this.select(t("form_file"), current, options, function (value, control) {
      if (value === "__new__") {
        var name = bo.id + ".schema.json";
        if (files[name] === undefined) {
          files[name] = JSON.stringify(newSchema(bo.name || bo.id), null, 2) + "\n";
          changed();
          var tab = addTab(name, "form");
          ext.setProp(element, bo, "formJsonSchemaFilename", name);
          activate(tab);
        } else {
          ext.setProp(element, bo, "formJsonSchemaFilename", name);
          status(t("form_exists", { f: name }));
        }
        value = name;
      } else {
        ext.setProp(element, bo, "formJsonSchemaFilename", value);
      }
      var ui = value ? baseOf(value) + ".uischema.json" : "";
      ext.setProp(element, bo, "formUiSchemaFilename", ui && files[ui] !== undefined ? ui : "");
      if (control.isConnected) { self.show(element); }
    }, "form");
    var formTab = current && tabFor(current);
    if (formTab) {
      var open = el("button", { type: "button", className: "linklike", "data-action": "open-form", text: t("open_form") });
      open.addEventListener("click", function () { activate(formTab); });
      wrap.appendChild(open);
    }
    var ui = getProp(bo, "formUiSchemaFilename");
    if (ui) { wrap.appendChild(el("p", { className: "prop-help", text: t("ui_form") + ": " + ui })); }
  };

  PropsPanel.prototype.dueFields = function (element, bo) {
    var ext = this.ext;
    var dueIn = getProp(bo, "dueIn");
    var dueDate = getProp(bo, "dueDate");
    var kind = dueDate ? "dueDate" : dueIn ? "dueIn" : "";
    var input = el("input", { type: "text", "data-due-value": "" });
    input.value = dueDate || dueIn;
    var help = el("p", { className: "prop-help" });
    var kindSelect;
    function apply() {
      var k = kindSelect.value;
      input.hidden = !k;
      help.textContent = k === "dueIn" ? t("due_in_help") : k === "dueDate" ? t("due_date_help") : "";
      var value = k ? input.value.trim() : "";
      ext.setProp(element, bo, "dueIn", k === "dueIn" ? value : "");
      ext.setProp(element, bo, "dueDate", k === "dueDate" ? value : "");
    }
    var wrap = this.select(t("due"), kind, [
      { value: "", label: t("due_none") }, { value: "dueIn", label: t("due_in") }, { value: "dueDate", label: t("due_date") }
    ], apply, "dueKind");
    kindSelect = wrap.querySelector("select");
    input.id = "prop-due";
    input.setAttribute("aria-label", t("due"));
    input.hidden = !kind;
    help.textContent = kind === "dueIn" ? t("due_in_help") : kind === "dueDate" ? t("due_date_help") : "";
    input.addEventListener("change", apply);
    wrap.appendChild(input);
    wrap.appendChild(help);
  };

  function newSchema(title) {
    return {
      "$schema": "https://json-schema.org/draft/2020-12/schema",
      "title": title,
      "type": "object",
      "properties": {},
      "required": [],
      "additionalProperties": false
    };
  }

  // ---------------------------------------------------------------- DMN
  // dmn-js (about 1 MB) is loaded when a DMN tab is first opened. Its bundle carries Inferno's development build,
  // which logs a console error on load saying so ("minified copy of the development build"): that one line is
  // dropped, every other console error still shows.
  var dmnScript = null;
  function loadDmnJs() {
    if (typeof window.DmnJS === "function") { return Promise.resolve(); }
    if (!dmnScript) {
      var original = console.error;
      console.error = function () {
        if (String(arguments[0]).indexOf("minified copy of the development build of Inferno") >= 0) { return undefined; }
        return original.apply(console, arguments);
      };
      dmnScript = new Promise(function (resolve, reject) {
        var script = el("script", { src: DATA.assets.dmn_js });
        script.addEventListener("load", resolve);
        script.addEventListener("error", function () { reject(new Error("dmn-js")); });
        document.body.appendChild(script);
      });
    }
    return dmnScript;
  }

  function initDmn(tab) {
    return loadDmnJs().then(function () { return openDmn(tab); }, function (err) { failed(tab, err.message); });
  }

  function openDmn(tab) {
    var head = el("div", { className: "studio-dmn-head" });
    var container = el("div", { className: "studio-dmn", "data-dmn-canvas": tab.name });
    tab.pane.appendChild(head);
    tab.pane.appendChild(container);
    if (typeof window.DmnJS !== "function") {
      failed(tab, "dmn-js");
      return Promise.resolve();
    }
    var modeler = new window.DmnJS({ container: container });
    tab.modeler = modeler;
    var watched = [];
    var opening = true;
    modeler.on("views.changed", function () {
      var viewer = modeler.getActiveViewer();
      if (viewer && watched.indexOf(viewer) < 0) {
        watched.push(viewer);
        viewer.get("eventBus").on("elements.changed", function () { if (!opening) { changed(); } });
        viewer.get("eventBus").on("commandStack.changed", function (event) {
          if (!opening && !(event && event.trigger === "clear")) { changed(); }
        });
      }
      window.setTimeout(function () { markDmn(tab); }, 0);
    });
    // open: false, then the first decision table: the DRD view would add inline style attributes (its logo)
    // that the CSP refuses
    return modeler.importXML(files[tab.name], { open: false }).then(function () {
      var views = modeler.getViews();
      var tables = views.filter(function (v) { return v.type === "decisionTable"; });
      if (views.length > 1) {
        var select = el("select", { "aria-label": t("decision_table"), "data-dmn-view": "" });
        views.forEach(function (v, i) {
          var label = (v.element.name || v.element.id) + (v.type === "drd" ? " (DRD)" : "");
          select.appendChild(el("option", { value: String(i), text: label }));
        });
        select.addEventListener("change", function () { modeler.open(views[Number(select.value)]); });
        head.appendChild(select);
        if (tables.length) { select.value = String(views.indexOf(tables[0])); }
      }
      return tables.length ? modeler.open(tables[0]) : null;
    }).then(function () {
      opening = false;
      container.setAttribute("data-ready", "1");
      markDmn(tab);
    }).catch(function (err) {
      opening = false;
      failed(tab, err && err.message);
    });
  }

  // ---------------------------------------------------------------- forms
  function jsonEditor(labelText, value, cls, onInput) {
    var wrap = el("div", { className: "json-editor" });
    var id = "json-" + Math.random().toString(36).slice(2);
    var area = el("textarea", { id: id, className: cls, spellcheck: "false", "data-json": cls });
    area.value = value;
    var msg = el("p", { className: "json-status", "aria-live": "polite" });
    wrap.appendChild(el("label", { "for": id, text: labelText }));
    wrap.appendChild(area);
    wrap.appendChild(msg);
    function validate() {
      var text = area.value;
      if (!text.trim() && cls === "uischema") { msg.textContent = ""; area.classList.remove("is-invalid"); return true; }
      try {
        JSON.parse(text);
        msg.textContent = t("json_ok");
        msg.classList.remove("is-error");
        area.classList.remove("is-invalid");
        area.removeAttribute("aria-invalid");
        return true;
      } catch (err) {
        msg.textContent = t("json_error") + " " + jsonErrorText(text, err);
        msg.classList.add("is-error");
        area.classList.add("is-invalid");
        area.setAttribute("aria-invalid", "true");
        return false;
      }
    }
    area.addEventListener("input", function () { onInput(area.value, validate()); });
    area.addEventListener("keydown", function (event) {  // Tab indents instead of leaving the field
      if (event.key === "Tab" && !event.shiftKey && !event.ctrlKey && !event.altKey) {
        event.preventDefault();
        area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
        area.dispatchEvent(new Event("input"));
      }
    });
    validate();
    return { wrap: wrap, area: area, validate: validate };
  }

  function jsonErrorText(text, err) {
    var message = String(err && err.message || err);
    var m = /position (\d+)/.exec(message);
    if (m && !/line \d+/.test(message)) {
      var before = text.slice(0, Number(m[1])).split("\n");
      message += " (" + t("line") + " " + before.length + ")";
    }
    return message;
  }

  function initForm(tab) {
    var grid = el("div", { className: "studio-form" });
    var editors = el("div", { className: "json-editors" });
    var previewBox = el("div", {}, [el("h3", { text: t("preview") })]);
    var preview = el("div", { className: "task-form studio-preview", "data-preview": tab.name });
    previewBox.appendChild(preview);
    grid.appendChild(editors);
    grid.appendChild(previewBox);
    tab.pane.appendChild(grid);
    var timer = null;
    var seq = 0;
    function schedule() {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, 400);
    }
    function refresh() {
      if (!schema.validate() || !uischema.validate()) { return; }
      var mine = ++seq;
      preview.setAttribute("aria-busy", "true");
      postJSON(DATA.urls.preview, { schema: files[tab.name] || "", uischema: files[tab.uiName] || "" }).then(function (res) {
        if (mine !== seq) { return; }
        preview.removeAttribute("aria-busy");
        if (res.ok && typeof res.data.html === "string") {
          preview.innerHTML = res.data.html;  // our own server-rendered, escaped form fields (templates/_form.html)
          preview.setAttribute("data-preview-seq", String(mine));
        } else {
          preview.textContent = "";
          preview.appendChild(el("p", { className: "preview-error", role: "alert",
                                        text: t("preview_failed") + " " + errorText(res.data) }));
        }
      }).catch(function () {
        if (mine === seq) { preview.removeAttribute("aria-busy"); status(t("network"), true); }
      });
    }
    var schema = jsonEditor(t("schema"), files[tab.name] || "", "schema", function (value) {
      files[tab.name] = value;
      changed();
      schedule();
    });
    var uischema = jsonEditor(t("uischema"), files[tab.uiName] || "", "uischema", function (value) {
      if (value.trim()) { files[tab.uiName] = value; } else { delete files[tab.uiName]; }
      changed();
      schedule();
    });
    tab.schemaArea = schema.area;
    tab.uiArea = uischema.area;
    editors.appendChild(schema.wrap);
    editors.appendChild(uischema.wrap);
    refresh();
    return Promise.resolve();
  }

  function initJson(tab) {
    var editor = jsonEditor(tab.name, files[tab.name] || "", "schema", function (value) {
      files[tab.name] = value;
      changed();
    });
    tab.schemaArea = editor.area;
    tab.pane.appendChild(el("div", { className: "studio-form" }, [editor.wrap]));
    return Promise.resolve();
  }

  // ---------------------------------------------------------------- files, save
  function blurPanels() {
    var active = document.activeElement;
    if (active && root.contains(active) && active.closest(".studio-props")) { active.blur(); }
  }

  function collectFiles() {
    blurPanels();
    var jobs = tabs.filter(function (tab) { return tab.modeler && !tab.failed && (tab.kind === "bpmn" || tab.kind === "dmn"); })
      .map(function (tab) {
        return tab.ready.then(function () {
          return tab.modeler.saveXML({ format: true });
        }).then(function (result) { files[tab.name] = result.xml; });
      });
    return Promise.all(jobs).then(function () { return Object.assign({}, files); });
  }

  var saving = null;
  function save() {
    if (saving) { return saving; }
    var seqAtStart;
    status(t("saving"));
    saving = collectFiles().then(function (snapshot) {
      seqAtStart = changeSeq;
      return postJSON(DATA.urls.save, { revision: revision, files: snapshot });
    }).then(function (res) {
      if (res.ok) {
        revision = res.data.revision;
        deployForm.elements.revision.value = String(revision);
        savedSeq = seqAtStart;
        refreshDirty();
        status(t("saved", { r: revision }));
        return true;
      }
      if (res.status === 409) {
        var box = $("[data-conflict]");
        box.querySelector("[data-conflict-text]").textContent = t("conflict") + (res.data.error ? " (" + res.data.error + ")" : "");
        box.hidden = false;
        status(t("save_failed") + " " + errorText(res.data), true);
      } else {
        status(t("save_failed") + " " + (errorText(res.data) || ("HTTP " + res.status)), true);
      }
      throw new Error("not saved");
    }, function (err) {
      if (err && err.message === "not saved") { throw err; }
      status(t("save_failed") + " " + (err && err.message ? err.message : t("network")), true);
      throw new Error("not saved");
    });
    saving.then(function () { saving = null; }, function () { saving = null; });
    return saving;
  }

  function saveIfNeeded() { return isDirty() ? save() : Promise.resolve(true); }

  function goTo(url) {
    saveIfNeeded().then(function () {
      leaving = true;
      window.location.href = url;
    }).catch(function () { /* the status line says why */ });
  }

  // ---------------------------------------------------------------- check, problems
  function check() {
    status(t("checking"));
    return collectFiles().then(function (snapshot) {
      return postJSON(DATA.urls.check, { files: snapshot });
    }).then(function (res) {
      if (!res.ok) { status(t("check_failed") + " " + errorText(res.data), true); return; }
      status("");
      showProblems(res.data.problems || []);
    }).catch(function (err) {
      status(t("check_failed") + " " + (err && err.message ? err.message : t("network")), true);
    });
  }

  function sorted(problems) {
    return problems.slice().sort(function (a, b) {
      return (a.severity === "error" ? 0 : 1) - (b.severity === "error" ? 0 : 1);
    });
  }

  function showProblems(problems, initial) {
    lastProblems = sorted(problems);
    var list = $("[data-problems]");
    var empty = $("[data-problems-empty]");
    var summary = $("[data-problems-summary]");
    list.textContent = "";
    var errors = lastProblems.filter(function (p) { return p.severity === "error"; }).length;
    summary.textContent = initial && !lastProblems.length ? ""
      : "(" + t("summary", { e: errors, w: lastProblems.length - errors }) + ")";
    empty.hidden = lastProblems.length > 0;
    if (!lastProblems.length && !initial) { empty.textContent = t("no_problems"); }
    lastProblems.forEach(function (p, i) {
      var where = [];
      if (p.element_id) { where.push(p.element_id + (p.element_name ? " · " + p.element_name : "")); }
      if (p.file) { where.push(p.file + (p.line ? ":" + p.line : "")); }
      var button = el("button", { type: "button", className: "linklike", "data-problem": String(i) }, [p.message]);
      button.addEventListener("click", function () { goToProblem(p); });
      list.appendChild(el("li", { className: "problem-" + p.severity, "data-severity": p.severity,
                                  "data-element-id": p.element_id || null, "data-file": p.file || null }, [
        el("span", { className: "sev sev-" + p.severity, text: t(p.severity) }),
        button,
        where.length ? el("span", { className: "where", text: where.join(" — ") }) : null
      ]));
    });
    tabs.forEach(markTab);
  }

  function problemsFor(tab) {
    return lastProblems.filter(function (p) {
      if (p.file) { return p.file === tab.name || p.file === tab.uiName; }
      return tab.kind === "bpmn" && p.element_id;  // no file: a diagram element, if it has an id
    });
  }

  function markTab(tab) {
    var mine = problemsFor(tab);
    tab.button.classList.toggle("has-error", mine.some(function (p) { return p.severity === "error"; }));
    if (tab.kind === "bpmn" && tab.modeler && !tab.failed && tab.markers) {
      var canvas = tab.modeler.get("canvas");
      var registry = tab.modeler.get("elementRegistry");
      tab.markers.forEach(function (m) { if (registry.get(m[0])) { canvas.removeMarker(m[0], m[1]); } });
      tab.markers = [];
      mine.forEach(function (p) {
        if (!p.element_id || !registry.get(p.element_id)) { return; }
        var cls = p.severity === "error" ? "studio-problem-error" : "studio-problem-warning";
        canvas.addMarker(p.element_id, cls);
        tab.markers.push([p.element_id, cls]);
      });
    }
    if (tab.kind === "dmn") { markDmn(tab); }
  }

  function markDmn(tab) {
    var container = tab.pane;
    container.querySelectorAll(".studio-problem-error, .studio-problem-warning").forEach(function (node) {
      node.classList.remove("studio-problem-error", "studio-problem-warning");
    });
    problemsFor(tab).forEach(function (p) {
      if (!p.element_id) { return; }
      var cls = p.severity === "error" ? "studio-problem-error" : "studio-problem-warning";
      container.querySelectorAll('[data-element-id="' + cssEscape(p.element_id) + '"], [data-row-id="' +
                                 cssEscape(p.element_id) + '"] td, [data-col-id="' + cssEscape(p.element_id) + '"]')
        .forEach(function (node) { node.classList.add(cls); });
    });
  }

  function cssEscape(text) { return window.CSS && CSS.escape ? CSS.escape(text) : String(text).replace(/"/g, '\\"'); }

  function goToProblem(p) {
    var tab = p.file ? tabFor(p.file) : null;
    if (!tab && p.element_id) {
      tab = tabs.filter(function (x) {
        return x.kind === "bpmn" && x.modeler && x.modeler.get("elementRegistry").get(p.element_id);
      })[0] || tabs.filter(function (x) { return x.kind === "bpmn"; })[0];
    }
    if (!tab) { return; }
    activate(tab).then(function () {
      if (tab.kind === "bpmn" && tab.modeler && p.element_id) {
        var registry = tab.modeler.get("elementRegistry");
        var element = registry.get(p.element_id);
        if (element) {
          tab.modeler.get("canvas").scrollToElement(element, { top: 120, bottom: 120, left: 200, right: 200 });
          tab.modeler.get("selection").select(element);
        }
      } else if (tab.kind === "dmn") {
        markDmn(tab);
        var cell = p.element_id && tab.pane.querySelector('[data-element-id="' + cssEscape(p.element_id) + '"]');
        if (cell) { cell.scrollIntoView({ block: "center" }); }
      } else if (tab.schemaArea) {
        var area = p.file === tab.uiName ? tab.uiArea : tab.schemaArea;
        area.focus();
        if (p.line) {
          var lines = area.value.split("\n");
          var start = lines.slice(0, p.line - 1).join("\n").length + (p.line > 1 ? 1 : 0);
          area.setSelectionRange(start, start + (lines[p.line - 1] || "").length);
        }
      }
    });
  }

  // ---------------------------------------------------------------- toolbar
  root.querySelector('[data-action="save"]').addEventListener("click", function () { save().catch(function () {}); });
  root.querySelector('[data-action="check"]').addEventListener("click", check);
  root.querySelector('[data-action="replay"]').addEventListener("click", function () { goTo(DATA.urls.replay_page); });
  root.querySelector('[data-action="download"]').addEventListener("click", function () { goTo(DATA.urls.download); });
  root.querySelector('[data-action="reload"]').addEventListener("click", function (event) {
    event.preventDefault();
    leaving = true;
    window.location.reload();
  });
  document.addEventListener("keydown", function (event) {
    if ((event.ctrlKey || event.metaKey) && !event.altKey && (event.key === "s" || event.key === "S")) {
      event.preventDefault();
      save().catch(function () {});
    }
  }, true);

  deployForm.addEventListener("submit", function (event) {
    event.preventDefault();
    var comment = deployForm.elements.comment;
    if (!comment.value.trim()) {
      status(t("comment_needed"), true);
      comment.focus();
      return;
    }
    saveIfNeeded().then(function () {
      deployForm.elements.revision.value = String(revision);
      leaving = true;
      deployForm.submit();
    }).catch(function () { /* the status line says why */ });
  });

  // ---------------------------------------------------------------- start
  buildTabs();
  if (tabs.length) { activate(tabs[0]); }
  showProblems(lastProblems, true);
})();
