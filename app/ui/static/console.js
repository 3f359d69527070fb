// Stratus console: draws charts with uPlot and polls small fragments of the page.
"use strict";
(function () {
  const pollMs = Number(document.body.dataset.pollMs || 5000);
  const LOG_KEEP = 2000;

  // Every request goes to Stratus itself, with the session cookie; a lapsed session sends
  // the browser to the sign-in page.
  async function get(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "console" } });
    if (response.redirected && new URL(response.url).pathname === "/ui/login") {
      window.location.assign(response.url);
      throw new Error("signed out");
    }
    if (!response.ok) throw new Error(url + ": " + response.status);
    return response;
  }

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function options(def, width) {
    const colors = ["--c1", "--c2", "--c3", "--c4"].map(css);
    const fg = css("--fg"), grid = css("--line");
    const axis = (extra) => Object.assign({ stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } }, extra);
    const right = def.lines.some((l) => l.axis === "right");
    const axes = [axis({}), axis({ scale: "y", label: def.y_label || "" })];
    if (right) axes.push(axis({ scale: "r", side: 1, label: def.y2_label || "", grid: { show: false } }));
    return {
      width: width,
      height: 240,
      scales: { x: { time: def.x_kind === "time" } },
      axes: axes,
      series: [{ label: { time: "time", elapsed: "seconds", step: "step" }[def.x_kind] || "x" }].concat(def.lines.map((l, i) => ({
        label: l.label,
        stroke: colors[i % colors.length],
        width: 2,
        dash: l.dash ? [6, 4] : undefined,
        scale: l.axis === "right" ? "r" : "y",
        spanGaps: true,
        points: { show: def.x.length < 40 },
      }))),
    };
  }

  function dataOf(def) {
    return [def.x].concat(def.lines.map((l) => l.values));
  }

  function drawCharts(box, payload) {
    const charts = payload.charts || [];
    box.plots = box.plots || {};
    let empty = box.querySelector(".charts-empty");
    if (!charts.length) {
      if (!empty) {
        empty = document.createElement("p");
        empty.className = "hint charts-empty";
        box.appendChild(empty);
      }
      empty.textContent = "No metric points here yet.";
      return;
    }
    if (empty) empty.remove();
    const width = () => Math.max(260, (box.querySelector("figure") || box).clientWidth - 20);
    for (const def of charts) {
      const known = box.plots[def.id];
      if (known && known.series.length === def.lines.length + 1) {
        known.setData(dataOf(def));
        continue;
      }
      if (known) known.destroy();
      let figure = box.querySelector('figure[data-id="' + CSS.escape(def.id) + '"]');
      if (!figure) {
        figure = document.createElement("figure");
        figure.dataset.id = def.id;
        const caption = document.createElement("figcaption");
        caption.textContent = def.title;
        figure.appendChild(caption);
        box.appendChild(figure);
      }
      const target = document.createElement("div");
      figure.appendChild(target);
      box.plots[def.id] = new uPlot(options(def, width()), dataOf(def), target);
    }
  }

  function followCharts(box) {
    const source = box.dataset.charts;
    const inline = document.getElementById("charts-data");
    if (!source) {
      if (inline) drawCharts(box, JSON.parse(inline.textContent));
      return;
    }
    const chosen = {};  // the page's chart choices (x axis, time span), sent as query
    const refresh = async () => {
      const query = new URLSearchParams(chosen).toString();
      try {
        drawCharts(box, await (await get(source + (query ? "?" + query : ""))).json());
      } catch (error) {
        console.warn(error);
      }
    };
    const tick = async () => {
      await refresh();
      if (box.dataset.follow === "true") setTimeout(tick, pollMs);
    };
    tick();
    // Another choice means other buckets: the charts are drawn again from scratch.
    for (const choice of box.parentElement.querySelectorAll("fieldset.chart-choice")) {
      choice.addEventListener("change", (event) => {
        chosen[choice.dataset.param] = event.target.value;
        for (const plot of Object.values(box.plots || {})) plot.destroy();
        box.plots = {};
        for (const figure of box.querySelectorAll("figure")) figure.remove();
        refresh();
      });
    }
  }

  function followLog(pre) {
    let cursor = null;
    const tick = async () => {
      try {
        for (let round = 0; round < 20; round++) {
          const url = pre.dataset.logs + (cursor ? "?cursor=" + encodeURIComponent(cursor) : "");
          const page = await (await get(url)).json();
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
          if (page.lines.length) {
            pre.textContent += page.lines.join("\n") + "\n";
            const lines = pre.textContent.split("\n");
            if (lines.length > LOG_KEEP) pre.textContent = lines.slice(-LOG_KEEP).join("\n");
            if (atBottom) pre.scrollTop = pre.scrollHeight;
          }
          const moved = page.next_cursor && page.next_cursor !== cursor;
          cursor = page.next_cursor || cursor;
          if (!moved || !page.lines.length) break;
        }
      } catch (error) {
        console.warn(error);
      }
      if (pre.dataset.follow === "true") setTimeout(tick, pollMs);
    };
    tick();
  }

  // A fragment is not replaced while the reader is inside it (focus, an open reason, a run
  // ticked for comparison).
  function busy(element) {
    return element.contains(document.activeElement) ||
      element.querySelector("details[open], input:checked") !== null;
  }

  function stopFollowing() {
    for (const element of document.querySelectorAll("[data-follow]")) element.dataset.follow = "false";
  }

  function followFragment(element) {
    const tick = async () => {
      if (!busy(element)) {
        try {
          // Replaced only when it changed, so a screen reader hears news, not the same page.
          const html = await (await get(element.dataset.live)).text();
          if (html !== element.dataset.shown) {
            element.innerHTML = html;
            element.dataset.shown = html;
          }
        } catch (error) {
          console.warn(error);
        }
      }
      const summary = element.querySelector(".summary");
      if (summary && summary.dataset.terminal === "true") {
        setTimeout(stopFollowing, pollMs);  // one more round picks up the last points
        return;
      }
      setTimeout(tick, pollMs);
    };
    const summary = element.querySelector(".summary");
    if (!(summary && summary.dataset.terminal === "true")) setTimeout(tick, pollMs);
  }

  document.addEventListener("submit", (event) => {
    const question = event.target.dataset && event.target.dataset.confirm;
    if (question && !window.confirm(question)) event.preventDefault();
  });

  window.addEventListener("DOMContentLoaded", () => {
    for (const box of document.querySelectorAll(".charts")) followCharts(box);
    for (const pre of document.querySelectorAll("pre[data-logs]")) followLog(pre);
    for (const element of document.querySelectorAll("[data-live]")) followFragment(element);
    window.addEventListener("resize", () => {
      for (const box of document.querySelectorAll(".charts")) {
        for (const plot of Object.values(box.plots || {})) {
          plot.setSize({ width: Math.max(260, plot.root.parentElement.clientWidth - 20), height: 240 });
        }
      }
    });
  });
})();
