// The WebGL scatter of workbench's dashboard: regl-scatterplot inside a Streamlit component
// (protocol v1, spoken directly: componentReady / render / setComponentValue / setFrameHeight).
// Args (workbench/dashboard/_scatter/__init__.py): xy (float32 bytes, [-1, 1]), z (float32
// bytes: category codes or values in [0, 1]), ids (int32 bytes), hover (strings or null),
// palette, legend, marks, selected (positions), data_id, title, height, point_size.
(function () {
  "use strict";
  const send = (type, extra) =>
    window.parent.postMessage({ isStreamlitMessage: true, apiVersion: 1, type, ...extra }, "*");
  const plotEl = document.getElementById("plot");
  const canvas = document.getElementById("points");
  const marksCanvas = document.getElementById("marks");
  const tip = document.getElementById("tip");
  let plot = null, dataId = null, ids = null, hover = null, labels = null, zCodes = null;
  let marks = [], lassoed = false, nonce = 0, width = 0, height = 0;

  const f32 = (b) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  const i32 = (b) => new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));

  function drawMarks() {
    const ctx = marksCanvas.getContext("2d");
    ctx.setTransform(window.devicePixelRatio, 0, 0, window.devicePixelRatio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    if (!plot) return;
    for (const m of marks) {
      ctx.strokeStyle = m.color; ctx.lineWidth = m.width;
      for (const p of m.positions) {
        const [x, y] = plot.getScreenPosition(p) || [];
        if (x === undefined) continue;
        ctx.beginPath(); ctx.arc(x, y, m.radius, 0, 2 * Math.PI); ctx.stroke();
      }
    }
  }

  function emit(points) {
    // the shape of a plotly selection event, so that the page's callback reads both
    nonce += 1;
    const value = {
      selection: {
        points: Array.from(points, (p) => ({ customdata: ids[p], point_index: p })),
        lasso: lassoed && mode !== "box" ? [{}] : [],
        box: lassoed && mode === "box" ? [{}] : [],
      },
      nonce,
    };
    lassoed = false;
    send("streamlit:setComponentValue", { value, dataType: "json" });
  }

  let mode = "pan";
  function setMode(m) {
    mode = m;
    for (const k of ["pan", "box", "lasso"])
      document.getElementById("mode-" + k).classList.toggle("on", k === m);
    if (!plot) return;
    plot.set({
      mouseMode: m === "pan" ? "panZoom" : "lasso",
      lassoType: m === "box" ? "rectangle" : "freeform",
    });
  }
  for (const k of ["pan", "box", "lasso"])
    document.getElementById("mode-" + k).onclick = () => setMode(k);
  document.getElementById("reset").onclick = () => plot && plot.reset();

  function create(args) {
    width = plotEl.clientWidth || window.innerWidth - 2;
    height = args.height;
    plotEl.style.height = height + "px";
    for (const c of [canvas, marksCanvas]) {
      c.style.width = width + "px"; c.style.height = height + "px";
    }
    marksCanvas.width = width * window.devicePixelRatio;
    marksCanvas.height = height * window.devicePixelRatio;
    plot = createScatterplot.default({
      canvas, width, height,
      pointSize: args.point_size,
      backgroundColor: "#ffffff",
      pointColor: args.palette,
      pointColorActive: "#000000",
      pointSizeSelected: 3,
      pointOutlineWidth: 1,
      opacity: 0.85,
      lassoColor: "#31333f",
      lassoInitiator: false,
      deselectOnDblClick: false,
      deselectOnEscape: false,
      aspectRatio: 1.0,
    });
    plot.subscribe("view", drawMarks);
    plot.subscribe("draw", drawMarks);
    plot.subscribe("lassoEnd", () => { lassoed = true; });
    plot.subscribe("select", ({ points }) => emit(points));
    plot.subscribe("pointOver", (p) => {
      const [x, y] = plot.getScreenPosition(p) || [0, 0];
      const label = labels && zCodes ? labels[zCodes[p]] : null;
      tip.textContent = (hover ? hover[p] : "row " + ids[p]) + (label != null ? "  ·  " + label : "");
      tip.style.left = Math.min(x + 10, width - 200) + "px"; tip.style.top = (y + 10) + "px";
      tip.style.display = "block";
    });
    plot.subscribe("pointOut", () => { tip.style.display = "none"; });
    setMode(mode);
    // for the browser tests: each point's position in this frame with its row, and the
    // selected rows
    window.__scatter = {
      points: () => {
        const box = canvas.getBoundingClientRect();
        return Array.from(ids, (id, p) => {
          const [x, y] = plot.getScreenPosition(p);
          return [box.left + x, box.top + y, id];
        });
      },
      selected: () => Array.from(plot.get("selectedPoints"), (p) => ids[p]),
    };
  }

  function legend(args) {
    const el = document.getElementById("legend");
    el.textContent = "";
    for (const [name, color] of args.legend) {
      const item = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = "sw"; sw.style.background = color;
      item.appendChild(sw); item.appendChild(document.createTextNode(name));
      el.appendChild(item);
    }
  }

  async function render(args) {
    document.getElementById("title").textContent = args.title || "";
    if (!plot) create(args);
    marks = args.marks || [];
    if (args.data_id !== dataId) {
      dataId = args.data_id;
      const xy = f32(args.xy), z = f32(args.z), n = xy.length / 2;
      ids = i32(args.ids); hover = args.hover; labels = args.labels; zCodes = args.z_type === "categorical" ? z : null;
      const x = new Float32Array(n), y = new Float32Array(n);
      for (let i = 0; i < n; i++) { x[i] = xy[2 * i]; y[i] = xy[2 * i + 1]; }
      plot.set({ pointColor: args.palette, colorBy: "valueA" });
      legend(args);
      await plot.draw({ x, y, valueA: z }, { zDataType: args.z_type });
      document.body.dataset.drawn = String(n);
    }
    plot.select(args.selected || [], { preventEvent: true });
    drawMarks();
    send("streamlit:setFrameHeight", { height: document.body.scrollHeight });
  }

  window.addEventListener("message", (e) => {
    if (e.data && e.data.type === "streamlit:render") render(e.data.args);
  });
  send("streamlit:componentReady");
})();
