/*
 * chart.c: a stacked bar chart drawn on the server as inline SVG (see
 * console.h, struct tk_chart).
 *
 * No script and no style attribute (the CSP allows neither): colours come
 * from the stylesheet by class (svg.chart .ok/.fail/.other), text is <text>.
 * Each bucket is one <g class="bar"> with a <title> giving its time and
 * counts (what a screen reader or a hover shows), then one <rect> per
 * series with a count, stacked from the bottom. A <p class="legend"> after
 * the SVG names each series with its total.
 */
#include "console.h"

#include <stdio.h>
#include <string.h>

#define W 720.0
#define H 200.0
#define LEFT 40.0 /* room for the y labels */
#define RIGHT 8.0
#define TOP 10.0
#define BOTTOM 22.0 /* room for the x labels */

/* The smallest 1, 2 or 5 times a power of ten at or above v (v >= 1). */
static long long nice_max(long long v)
{
    long long p = 1;
    while (p * 10 <= v)
        p *= 10;
    if (v <= p) return p;
    if (v <= 2 * p) return 2 * p;
    if (v <= 5 * p) return 5 * p;
    return 10 * p;
}

/* A bucket's start as shown on the axis and in its title: "10:05" for
 * buckets under a day, "12-03" otherwise (UTC). out: 16 bytes. */
static void tick_label(int64_t ms, int64_t bucket_ms, char *out, size_t n)
{
    char iso[40];
    tk_time_fmt(ms, iso, sizeof iso); /* 2026-12-03T10:05:00.000Z */
    if (bucket_ms < 86400000)
        snprintf(out, n, "%.5s", iso + 11);
    else
        snprintf(out, n, "%.5s", iso + 5);
}

void tk_console_chart(struct tk_cpage *pg, const struct tk_chart *c)
{
    int nb = c->nbuckets, ns = c->nseries;
    if (nb < 1 || nb > TK_CHART_MAX_BUCKETS || ns < 1 || ns > TK_CHART_MAX_SERIES || !c->counts ||
        c->bucket_ms <= 0) {
        tk_htmlf(pg, "<p class=\"muted\">%s: nothing to draw.</p>", c->title ? c->title : "Chart");
        return;
    }
    long long top = 0, totals[TK_CHART_MAX_SERIES] = {0};
    for (int b = 0; b < nb; b++) {
        long long sum = 0;
        for (int s = 0; s < ns; s++) {
            int v = c->counts[s * nb + b];
            if (v > 0) {
                sum += v;
                totals[s] += v;
            }
        }
        if (sum > top) top = sum;
    }
    long long ymax = nice_max(top > 0 ? top : 1);
    double pw = W - LEFT - RIGHT, ph = H - TOP - BOTTOM;
    double slot = pw / nb, bw = slot > 3 ? slot * 0.8 : slot;

    tk_htmlf(pg,
             "<svg class=\"chart\" viewBox=\"0 0 %d %d\" role=\"img\" "
             "xmlns=\"http://www.w3.org/2000/svg\"><title>%s</title>",
             (int)W, (int)H, c->title ? c->title : "");
    /* the y axis: 0, half and the top, with grid lines */
    for (int k = 0; k <= 2; k++) {
        long long v = ymax * k / 2;
        if (k == 1 && ymax < 2) continue; /* no half of 1 */
        double y = TOP + ph - ph * (double)v / (double)ymax;
        tk_htmlf(pg,
                 "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                 "<text class=\"y\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%lld</text>",
                 LEFT, y, W - RIGHT, y, LEFT - 4, y + 3.5, v);
    }
    /* the bars */
    for (int b = 0; b < nb; b++) {
        int64_t at = c->start_ms + (int64_t)b * c->bucket_ms;
        char iso[40], when[16];
        tk_time_fmt(at, iso, sizeof iso);
        tick_label(at, c->bucket_ms, when, sizeof when);
        tk_htmlf(pg, "<g class=\"bar\" data-at=\"%s\"><title>%s UTC:", iso, when);
        for (int s = 0; s < ns; s++)
            tk_htmlf(pg, "%s %s %d", s ? "," : "", c->label[s] ? c->label[s] : "",
                     c->counts[s * nb + b] > 0 ? c->counts[s * nb + b] : 0);
        tk_html(pg, "</title>");
        double x = LEFT + slot * b + (slot - bw) / 2, y = TOP + ph;
        for (int s = 0; s < ns; s++) {
            int v = c->counts[s * nb + b];
            if (v <= 0) continue;
            double h = ph * v / (double)ymax;
            y -= h;
            tk_htmlf(pg,
                     "<rect class=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                     "height=\"%.1f\"/>",
                     c->cls[s] ? c->cls[s] : "other", x, y, bw, h);
        }
        tk_html(pg, "</g>");
    }
    /* the x axis: a base line and about six time labels */
    tk_htmlf(pg, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", LEFT,
             TOP + ph, W - RIGHT, TOP + ph);
    int every = (nb + 5) / 6;
    for (int b = 0; b < nb; b += every) {
        char when[16];
        tick_label(c->start_ms + (int64_t)b * c->bucket_ms, c->bucket_ms, when, sizeof when);
        tk_htmlf(pg, "<text class=\"x\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>",
                 LEFT + slot * b + slot / 2, H - 6, when);
    }
    tk_html(pg, "</svg>\n<p class=\"legend\">");
    for (int s = 0; s < ns; s++)
        tk_htmlf(pg, "<span><i class=\"%s\"></i>%s: %lld</span>", c->cls[s] ? c->cls[s] : "other",
                 c->label[s] ? c->label[s] : "", totals[s]);
    tk_html(pg, "</p>\n");
}
