// tierkit/sim/report.hpp: renders simulator results as CSV, a markdown table
// and a gnuplot script (hit ratio and migrated bytes over virtual time).
// Layer 3 of the simulator: plain formatting, no I/O.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "tierkit/sim/simulator.hpp"

namespace tierkit::sim {

inline const std::vector<std::string>& csv_columns() {
  static const std::vector<std::string> cols = {"workload",
                                                "policy",
                                                "accesses",
                                                "fast_hit_ratio",
                                                "mean_latency_ns",
                                                "promoted_pages",
                                                "demoted_pages",
                                                "migrated_bytes",
                                                "pingpong_pages",
                                                "app_time_s",
                                                "background_time_s",
                                                "sync_migration_time_s",
                                                "final_threshold",
                                                "threshold_unit",
                                                "epochs",
                                                "pages",
                                                "fast_pages",
                                                "app_move_time_s",
                                                "move_calls",
                                                "total_cpu_s",
                                                "hotness",
                                                "tracking_overhead_s",
                                                "tracking_app_s",
                                                "tracking_background_s",
                                                "tracking_pct_of_app",
                                                "source_faults",
                                                "source_pages_sampled",
                                                "source_pages_found"};
  return cols;
}

namespace detail {
inline std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\"", "\"\""}}), "\"");
}
// Tracking cost (application's part and engine's part) as % of app time.
inline double tracking_pct(const SimResult& r) {
  return r.app_ns > 0 ? 100.0 * r.tracking_ns() / static_cast<double>(r.app_ns) : 0;
}
inline std::string threshold_text(const SimResult& r) {
  if (r.threshold_unit == "-") return "-";
  if (!(r.final_threshold < 1e300)) return "-";  // nothing qualifies
  return absl::StrFormat("%.4g", r.final_threshold);
}
}  // namespace detail

inline std::string to_csv(const std::vector<SimResult>& rs) {
  std::string out = absl::StrCat(absl::StrJoin(csv_columns(), ","), "\n");
  for (const auto& r : rs) {
    absl::StrAppend(&out,
                    absl::StrJoin({detail::csv_field(r.workload),
                                   detail::csv_field(r.policy),
                                   absl::StrCat(r.accesses),
                                   absl::StrFormat("%.6f", r.hit_ratio()),
                                   absl::StrFormat("%.2f", r.mean_latency_ns),
                                   absl::StrCat(r.promoted_pages),
                                   absl::StrCat(r.demoted_pages),
                                   absl::StrCat(r.migrated_bytes),
                                   absl::StrCat(r.pingpong_pages),
                                   absl::StrFormat("%.4f", static_cast<double>(r.app_ns) / 1e9),
                                   absl::StrFormat("%.4f", r.background_ns / 1e9),
                                   absl::StrFormat("%.4f", r.sync_migration_ns / 1e9),
                                   detail::threshold_text(r),
                                   detail::csv_field(r.threshold_unit),
                                   absl::StrCat(r.epochs),
                                   absl::StrCat(r.pages),
                                   absl::StrCat(r.fast_pages),
                                   absl::StrFormat("%.4f", r.app_move_ns / 1e9),
                                   absl::StrCat(r.move_calls),
                                   absl::StrFormat("%.4f", r.total_cpu_ns() / 1e9),
                                   detail::csv_field(r.hotness),
                                   absl::StrFormat("%.6f", r.tracking_ns() / 1e9),
                                   absl::StrFormat("%.6f", r.tracking_app_ns / 1e9),
                                   absl::StrFormat("%.6f", r.tracking_background_ns / 1e9),
                                   absl::StrFormat("%.4f", detail::tracking_pct(r)),
                                   absl::StrCat(r.source_faults),
                                   absl::StrCat(r.source_sampled),
                                   absl::StrCat(r.source_found)},
                                  ","),
                    "\n");
  }
  return out;
}

// One line per workload where `automatic` ran: which online policies
// dominate it (hit ratio >= and promotions <=), or that none does.
inline std::string dominance_notes(const std::vector<SimResult>& rs) {
  std::string out;
  for (const auto& r : rs) {
    if (r.policy != "automatic" || r.hotness != "app") continue;
    std::vector<std::string> by = dominators(rs, r.workload, r.policy);
    if (out.empty()) absl::StrAppend(&out, "\n");
    absl::StrAppend(&out, "- ", r.workload, ": `automatic` is ",
                    by.empty() ? "not dominated" : "**dominated** by ", absl::StrJoin(by, ", "),
                    "\n");
  }
  return out;
}

// With hotness sources: hit ratio and tracking cost per (workload, policy,
// hotness), and each source's hit ratio against the same policy fed by the
// application ("app").
inline std::string hotness_markdown(const std::vector<SimResult>& rs) {
  std::string out =
      "| workload | policy | hotness | fast hit | vs app | promoted | tracking (s) | on app "
      "threads (s) | background (s) | % of app time | source faults | pages sampled / found |\n"
      "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
  for (const auto& r : rs) {
    if (r.hotness == "-") continue;
    auto app = std::find_if(rs.begin(), rs.end(), [&](const SimResult& a) {
      return a.workload == r.workload && a.policy == r.policy && a.hotness == "app";
    });
    std::string vs = "-";
    if (app != rs.end() && app->hit_ratio() > 0)
      vs = absl::StrFormat("%.3fx", r.hit_ratio() / app->hit_ratio());
    absl::StrAppendFormat(&out,
                          "| %s | %s | %s | %.1f%% | %s | %u | %.4f | %.4f | %.4f | %.2f%% | %u | "
                          "%u / %u |\n",
                          r.workload, r.policy, r.hotness, 100 * r.hit_ratio(), vs,
                          r.promoted_pages, r.tracking_ns() / 1e9, r.tracking_app_ns / 1e9,
                          r.tracking_background_ns / 1e9, detail::tracking_pct(r), r.source_faults,
                          r.source_sampled, r.source_found);
  }
  return out;
}

inline std::string to_markdown(const std::vector<SimResult>& rs) {
  if (std::any_of(rs.begin(), rs.end(),
                  [](const SimResult& r) { return r.hotness != "app" && r.hotness != "-"; }))
    return hotness_markdown(rs);
  std::string out =
      "| workload | policy | fast hit | mean lat (ns) | promoted | demoted | migrated (MiB) | "
      "ping-pong | app (s) | background (s) | sync migr. (s) | move stalls (s) | total CPU (s) | "
      "final threshold |\n"
      "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";
  for (const auto& r : rs) {
    std::string th = detail::threshold_text(r);
    if (th != "-") absl::StrAppend(&th, " ", r.threshold_unit);
    absl::StrAppendFormat(
        &out,
        "| %s | %s | %.1f%% | %.1f | %u | %u | %.1f | %u | %.2f | %.2f | %.2f | %.3f | %.3f | %s "
        "|\n",
        r.workload, r.policy, 100 * r.hit_ratio(), r.mean_latency_ns, r.promoted_pages,
        r.demoted_pages, static_cast<double>(r.migrated_bytes) / 1048576.0, r.pingpong_pages,
        static_cast<double>(r.app_ns) / 1e9, r.background_ns / 1e9, r.sync_migration_ns / 1e9,
        r.app_move_ns / 1e9, r.total_cpu_ns() / 1e9, th);
  }
  absl::StrAppend(&out, dominance_notes(rs));
  return out;
}

// A gnuplot script drawing, per workload, the fast-tier hit ratio and the
// cumulative migrated MiB over virtual time, one line per policy, into `png`.
// Uses the pngcairo terminal when gnuplot has it, else png.
// series_csv()
//
// Every run's time series (SimResult::series: one row per --sample_ms of
// virtual time) as CSV: workload, policy, hotness, the interval's end (s),
// its fast-tier hit ratio, and the bytes migrated so far. What --plot draws,
// as numbers: where in a run one policy gains or loses against another.
inline std::string series_csv(const std::vector<SimResult>& rs) {
  std::string out = "workload,policy,hotness,t_s,hit_ratio,migrated_bytes\n";
  for (const auto& r : rs)
    for (const auto& s : r.series)
      absl::StrAppendFormat(&out, "%s,%s,%s,%.3f,%.5f,%u\n", detail::csv_field(r.workload),
                            detail::csv_field(r.policy), detail::csv_field(r.hotness), s.t_s,
                            s.hit_ratio, s.migrated_bytes);
  return out;
}

inline std::string gnuplot_script(const std::vector<SimResult>& rs, const std::string& png) {
  std::vector<std::string> workloads, policies;
  for (const auto& r : rs) {
    if (std::find(workloads.begin(), workloads.end(), r.workload) == workloads.end())
      workloads.push_back(r.workload);
    if (std::find(policies.begin(), policies.end(), r.policy) == policies.end())
      policies.push_back(r.policy);
  }
  auto quoted = [](const std::string& s) {
    return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\\", "\\\\"}, {"\"", "\\\""}}), "\"");
  };
  std::string g;
  for (std::size_t i = 0; i < rs.size(); ++i) {
    absl::StrAppend(&g, "$d", i, " << EOD\n");
    for (const auto& s : rs[i].series)
      absl::StrAppendFormat(&g, "%.3f %.5f %.3f\n", s.t_s, s.hit_ratio,
                            static_cast<double>(s.migrated_bytes) / 1048576.0);
    absl::StrAppend(&g, "EOD\n");
  }
  const int rows = static_cast<int>(workloads.size());
  absl::StrAppendFormat(&g,
                        "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
                        "  set terminal pngcairo size 1300,%d font \"sans,9\" linewidth 1.2\n"
                        "} else {\n"
                        "  set terminal png size 1300,%d\n"
                        "}\n"
                        "set output %s\n"
                        "set multiplot layout %d,2\n"
                        "set grid\nset key outside right top\nset xlabel \"virtual time (s)\"\n",
                        60 + 250 * rows, 60 + 250 * rows, quoted(png), rows);
  for (const auto& w : workloads) {
    for (int panel = 0; panel < 2; ++panel) {
      std::vector<std::string> curves;
      for (std::size_t i = 0; i < rs.size(); ++i) {
        if (rs[i].workload != w || rs[i].series.empty()) continue;
        if (panel == 1 && rs[i].migrated_bytes == 0) continue;
        auto pi = std::find(policies.begin(), policies.end(), rs[i].policy) - policies.begin();
        static const char* const kColors[] = {"#7f7f7f", "#d62728", "#ff7f0e", "#8c564b",
                                              "#9467bd", "#1f77b4", "#000000", "#2ca02c",
                                              "#e377c2", "#17becf"};
        curves.push_back(absl::StrFormat(
            "$d%d using 1:%s with lines lc rgb \"%s\" %s title %s", i,
            panel == 0 ? "2" : "($3 > 0 ? $3 : NaN)", kColors[static_cast<std::size_t>(pi) % 10],
            is_oracle(rs[i].policy) ? "dt 2 lw 1.5" : "", quoted(rs[i].policy)));
      }
      if (panel == 0) {
        absl::StrAppend(&g,
                        "unset logscale y\nset yrange [0:1]\nset ylabel \"fast-tier hit ratio\"\n",
                        "set title ", quoted(absl::StrCat(w, ": fast-tier hit ratio")), "\n");
      } else {
        absl::StrAppend(&g, "set autoscale y\nset logscale y\nset ylabel \"MiB (log)\"\n",
                        "set title ", quoted(absl::StrCat(w, ": migrated MiB, cumulative")), "\n");
      }
      if (curves.empty())
        absl::StrAppend(&g,
                        "unset logscale y\nset yrange [0:1]\nplot 2 notitle lc rgb \"white\"\n");
      else
        absl::StrAppend(&g, "plot ", absl::StrJoin(curves, ", \\\n     "), "\n");
    }
  }
  absl::StrAppend(&g, "unset multiplot\n");
  return g;
}

}  // namespace tierkit::sim
