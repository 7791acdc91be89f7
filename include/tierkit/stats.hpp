// tierkit/stats.hpp: the engine's counters, as a struct, a JSON string, a
// human table and a one-line epoch summary. Plain data; copying is cheap.
// Layer 1: includes backend.hpp (for ErrnoCounts).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tierkit/backend.hpp"

namespace tierkit {

// One hotness source's counters since it was added (see hotness_source.hpp).
struct HotnessSourceCounters {
  std::string name;
  std::uint64_t cpu_ns = 0;      // collect() on the engine thread + fault handlers
  std::uint64_t handler_ns = 0;  // of which in fault handlers (application threads)
  std::uint64_t pages_sampled = 0, pages_found = 0, pages_written = 0;
  std::uint64_t errors = 0;
  std::string last_error;
  // Sources that size their sample by SourceBudget::cpu_fraction (fault):
  // last epoch's allowance, the estimated cost of one sample, the pages
  // inspected last epoch, and the estimated CPU of the faults it made the
  // application's threads take, all in total (HotnessSourceStats).
  std::uint64_t budget_ns = 0, ns_per_sample = 0, last_sampled = 0, app_ns = 0;
};

// EngineStats
//
// A copy of the engine's counters (Engine::stats()), cumulative unless named
// epoch_*; as a struct, JSON (to_json), a table (to_table) or one line per
// epoch (to_line). Cost: a copy under the engine's mutex. Thread safety: a
// value type.
//
// Example:
//   std::puts(engine->stats().to_table().c_str());
struct EngineStats {
  std::string policy;
  std::string backend;
  std::uint64_t epochs = 0;
  std::uint64_t regions = 0;
  std::uint64_t tracked_pages = 0, fast_pages = 0, slow_pages = 0;
  // Tracked pages accessed since they were tracked, in 8-page groups
  // (HotnessTracker::seen_pages): far below tracked_pages means most of
  // what is registered is idle.
  std::uint64_t seen_pages = 0;
  // Pages moved, including those a later query found a failed move() had
  // moved (placement_relocated).
  std::uint64_t promoted_pages = 0, demoted_pages = 0;
  std::uint64_t promoted_bytes = 0, demoted_bytes = 0;
  std::uint64_t promotion_candidates = 0, demotion_candidates = 0;
  std::uint64_t deferred_pages = 0;  // wanted to move, held back by the rate limiter
  std::uint64_t busy_retries = 0;    // -EBUSY: left for a later epoch
  // Any other per-page failure. A unit of a failed move() whose placement
  // nothing could tell (the query after it failed too) counts only once
  // known: as moved (promoted / demoted) if a later query finds it on its
  // target, here if found elsewhere or absent, given up
  // (placement_given_up) or its region unregistered. Until then it is in
  // neither count.
  std::uint64_t failed_pages = 0;
  std::uint64_t dropped_pages = 0;  // unmapped (-EFAULT): no longer tracked
  // Not present (-ENOENT: never touched, or freed): they hold no memory, so
  // from then on they are believed slow and left out of the fast budget.
  std::uint64_t absent_pages = 0;
  std::uint64_t pingpong_pages = 0;  // moved back within the ping-pong window
  // 2 MiB units moved whole (one huge page each), and those that turned out
  // not to be one huge page and fell back to 4 KiB units.
  std::uint64_t huge_units_moved = 0, huge_units_split = 0;
  // Huge pages a move of a 4 KiB unit carried whole (the kernel moves a
  // huge page as one; the other tracked pages count as moved too), and those
  // of them that became one 2 MiB unit.
  std::uint64_t huge_pages_carried = 0, huge_units_merged = 0;
  // Units believed fast that a placement query found elsewhere when they
  // became active (first touch in a full fast node, or the kernel moved them)
  // or were asked after the kernel moved pages; and, during that round of
  // checks, units about to move found already on their target tier (not
  // moved, and not counted as promoted or demoted).
  std::uint64_t placement_corrected = 0;
  // Pages the kernel moved on its own, machine-wide, while the engine ran
  // (Backend::kernel_moved_pages: reclaim's demotions, NUMA balancing), and
  // the units the engine asked about in a round of checks after them, or
  // after a placement query failed in register_region (Engine::kVerifyBatch
  // an epoch).
  std::uint64_t kernel_moved_pages = 0, placement_verified = 0;
  // Units whose placement a failed move() left unknown (the query after it
  // failed too): those a later epoch's query answered for (each present one
  // believed where it is from then on; one on its target accounted as moved
  // in the epoch of that move, the others as failed), and those given up
  // after failed queries (Engine::kRelocateEpochs, kMaxUnlocated), counted
  // as failed, whose belief may stay wrong. A unit counts once per failed
  // move() it was in.
  std::uint64_t placement_relocated = 0, placement_given_up = 0;
  // Pages of those units still waiting for a query that answers (counted
  // once per failed move() each was in): in none of the counts above yet.
  std::uint64_t unlocated_pages = 0;
  // Epochs whose plan kept free room in the fast budget (Policy::kept_room:
  // the watermarks, or room for births), and the room the last one kept.
  std::uint64_t room_epochs = 0, epoch_room_pages = 0;
  // The fast nodes' free memory promotions leave, last epoch: per node the
  // larger of 1 - high_watermark of it and the kernel's own reserve (its
  // zones' high watermarks), which is also given alone. When the kernel's
  // is the larger, the watermark knob has no effect on that node.
  std::uint64_t reserve_pages = 0, kernel_reserve_pages = 0;
  // Regions kept from the kernel's NUMA balancing (EngineConfig::
  // kernel_balancing), and the registrations where that failed, with the
  // last failure's message.
  std::uint64_t regions_kept_from_numa_balancing = 0, numa_balancing_errors = 0;
  std::string numa_balancing_error;
  ErrnoCounts failures_by_errno;       // per-page failures by errno
  std::uint64_t outside_accesses = 0;  // record_access outside every region
  // The promotion threshold in force, in the policy's own unit (heat for
  // automatic, accesses/epoch for threshold, ms for the kernel model);
  // infinite when no page qualifies (shown as "-").
  double promotion_threshold = 0;
  std::string threshold_unit;
  std::string environment;     // TIERKIT_* values applied at creation (EngineConfig)
  double fast_heat_share = 0;  // heat-weighted share of accesses on fast pages
  std::int64_t last_epoch_ns = 0, total_epoch_ns = 0;
  // This epoch only (the live line).
  std::uint64_t epoch_promoted = 0, epoch_demoted = 0, epoch_deferred = 0;
  // Hotness sources (Engine::add_hotness_source), in the order added, and
  // the CPU time they spent in total.
  std::vector<HotnessSourceCounters> hotness_sources;
  std::uint64_t tracking_cpu_ns = 0;
  // The fast tier's mean heat per watched page, from sampled evidence
  // (Engine::add_hotness_source, SourceEstimator::kRate); 0 without it.
  double sampled_fast_rate = 0;

  std::string to_json() const {
    // Errnos without a name are summed under one "other" key, last: a key
    // per errno repeated "other", and JSON readers keep one of the counts.
    std::string errnos;
    std::uint64_t other = 0;
    for (int e = 1; e < ErrnoCounts::kMax; ++e) {
      const std::uint64_t n = failures_by_errno.count[static_cast<std::size_t>(e)];
      if (n == 0) continue;
      if (std::strcmp(errno_name(e), "other") == 0)
        other += n;
      else
        absl::StrAppend(&errnos, errnos.empty() ? "" : ",", "\"", errno_name(e), "\":", n);
    }
    if (other != 0) absl::StrAppend(&errnos, errnos.empty() ? "" : ",", "\"other\":", other);
    return absl::StrFormat(
        "{\"policy\":\"%s\",\"backend\":\"%s\",\"epochs\":%u,\"regions\":%u,"
        "\"tracked_pages\":%u,\"fast_pages\":%u,\"slow_pages\":%u,\"seen_pages\":%u,"
        "\"promoted_pages\":%u,\"demoted_pages\":%u,\"promoted_bytes\":%u,\"demoted_bytes\":%u,"
        "\"promotion_candidates\":%u,\"demotion_candidates\":%u,\"deferred_pages\":%u,"
        "\"busy_retries\":%u,\"failed_pages\":%u,\"dropped_pages\":%u,\"absent_pages\":%u,"
        "\"pingpong_pages\":%u,"
        "\"huge_units_moved\":%u,\"huge_units_split\":%u,\"huge_pages_carried\":%u,"
        "\"huge_units_merged\":%u,\"placement_corrected\":%u,"
        "\"kernel_moved_pages\":%u,\"placement_verified\":%u,"
        "\"placement_relocated\":%u,\"placement_given_up\":%u,\"unlocated_pages\":%u,"
        "\"room_epochs\":%u,\"reserve_pages\":%u,\"kernel_reserve_pages\":%u,"
        "\"regions_kept_from_numa_balancing\":%u,\"numa_balancing_errors\":%u,"
        "\"failures_by_errno\":{%s},\"outside_accesses\":%u,\"promotion_"
        "threshold\":%s,"
        "\"threshold_unit\":\"%s\",\"environment\":\"%s\",\"fast_heat_share\":%.4f,\"last_epoch_"
        "ns\":%d,"
        "\"total_epoch_ns\":%d}",
        json_escape(policy), json_escape(backend), epochs, regions, tracked_pages, fast_pages,
        slow_pages, seen_pages, promoted_pages, demoted_pages, promoted_bytes, demoted_bytes,
        promotion_candidates, demotion_candidates, deferred_pages, busy_retries, failed_pages,
        dropped_pages, absent_pages, pingpong_pages, huge_units_moved, huge_units_split,
        huge_pages_carried, huge_units_merged, placement_corrected, kernel_moved_pages,
        placement_verified, placement_relocated, placement_given_up, unlocated_pages, room_epochs,
        reserve_pages, kernel_reserve_pages, regions_kept_from_numa_balancing,
        numa_balancing_errors, errnos, outside_accesses,
        std::isfinite(promotion_threshold) ? absl::StrCat(promotion_threshold) : "null",
        json_escape(threshold_unit), json_escape(environment), fast_heat_share, last_epoch_ns,
        total_epoch_ns);
  }

  // The hotness sources as JSON: {"tracking_cpu_ns":N,"sources":[{...}]}.
  std::string hotness_sources_json() const {
    std::string out = absl::StrCat("{\"tracking_cpu_ns\":", tracking_cpu_ns, ",\"sources\":[");
    for (std::size_t i = 0; i < hotness_sources.size(); ++i) {
      const HotnessSourceCounters& h = hotness_sources[i];
      absl::StrAppendFormat(&out,
                            "%s{\"name\":\"%s\",\"cpu_ns\":%u,\"handler_ns\":%u,"
                            "\"pages_sampled\":%u,\"pages_found\":%u,\"pages_written\":%u,"
                            "\"errors\":%u,\"budget_ns\":%u,\"ns_per_sample\":%u,"
                            "\"last_sampled\":%u,\"app_ns\":%u}",
                            i ? "," : "", json_escape(h.name), h.cpu_ns, h.handler_ns,
                            h.pages_sampled, h.pages_found, h.pages_written, h.errors, h.budget_ns,
                            h.ns_per_sample, h.last_sampled, h.app_ns);
    }
    return out + "]}";
  }

  std::string to_table() const {
    std::string t;
    auto row = [&](const char* k, const std::string& v) {
      absl::StrAppendFormat(&t, "%-22s %s\n", k, v);
    };
    row("policy", policy);
    row("backend", backend);
    row("epochs", absl::StrCat(epochs));
    row("regions", absl::StrCat(regions));
    row("tracked pages",
        absl::StrFormat("%u (fast %u, slow %u)", tracked_pages, fast_pages, slow_pages));
    row("seen pages", absl::StrFormat("%u (accessed since tracked)", seen_pages));
    row("promoted",
        absl::StrFormat("%u pages (%.1f MiB)", promoted_pages, promoted_bytes / 1048576.0));
    row("demoted",
        absl::StrFormat("%u pages (%.1f MiB)", demoted_pages, demoted_bytes / 1048576.0));
    row("candidates",
        absl::StrFormat("promote %u, demote %u", promotion_candidates, demotion_candidates));
    row("deferred (rate limit)", absl::StrCat(deferred_pages));
    row("busy retries", absl::StrCat(busy_retries));
    row("failed/dropped/absent",
        absl::StrFormat("%u / %u / %u", failed_pages, dropped_pages, absent_pages));
    row("ping-pong pages", absl::StrCat(pingpong_pages));
    row("2 MiB units moved",
        absl::StrFormat("%u (%u fell back to 4 KiB)", huge_units_moved, huge_units_split));
    row("huge pages carried", absl::StrFormat("%u by 4 KiB moves (%u became 2 MiB units)",
                                              huge_pages_carried, huge_units_merged));
    row("placement corrected",
        absl::StrFormat("%u (%u asked after the kernel moved %u pages)", placement_corrected,
                        placement_verified, kernel_moved_pages));
    row("placement unknown",
        absl::StrFormat("%u units found later, %u given up, %u pages waiting", placement_relocated,
                        placement_given_up, unlocated_pages));
    row("room kept", absl::StrFormat("%u epochs (last: %u pages)", room_epochs, epoch_room_pages));
    row("fast reserve",
        absl::StrFormat("%u pages (kernel's watermarks: %u)", reserve_pages, kernel_reserve_pages));
    row("kept from AutoNUMA",
        absl::StrFormat(
            "%u regions%s", regions_kept_from_numa_balancing,
            numa_balancing_errors == 0
                ? ""
                : absl::StrCat("; ", numa_balancing_errors, " failed: ", numa_balancing_error)));
    row("outside accesses", absl::StrCat(outside_accesses));
    row("threshold", threshold_text());
    row("environment", environment);
    row("fast heat share", absl::StrFormat("%.1f%%", 100 * fast_heat_share));
    for (const HotnessSourceCounters& h : hotness_sources)
      row(absl::StrCat("source ", h.name).c_str(),
          absl::StrFormat("%.3f ms CPU, %u pages sampled, %u found (%u written)%s", h.cpu_ns / 1e6,
                          h.pages_sampled, h.pages_found, h.pages_written,
                          h.last_error.empty() ? "" : absl::StrCat("; ", h.last_error)));
    row("epoch time",
        absl::StrFormat("last %.3f ms, mean %.3f ms", last_epoch_ns / 1e6,
                        epochs ? total_epoch_ns / 1e6 / static_cast<double>(epochs) : 0.0));
    return t;
  }

  // One line per epoch for live output.
  std::string to_line() const {
    return absl::StrFormat(
        "epoch %4u  fast-hit %5.1f%%  promoted %6u  demoted %6u  deferred %6u  fast %u/%u pages  "
        "threshold %s",
        epochs, 100 * fast_heat_share, epoch_promoted, epoch_demoted, epoch_deferred, fast_pages,
        tracked_pages, threshold_text());
  }

  // "12 heat", "8 accesses/epoch", "1000 ms", or "-" when nothing qualifies.
  std::string threshold_text() const {
    if (!std::isfinite(promotion_threshold)) return "-";
    return absl::StrFormat("%g %s", promotion_threshold, threshold_unit);
  }

  // Escapes `s` for a JSON string (quotes, backslashes, control bytes).
  static std::string json_escape(const std::string& s) {
    std::string out;
    for (char ch : s) {
      if (ch == '"' || ch == '\\')
        absl::StrAppend(&out, "\\", std::string(1, ch));
      else if (static_cast<unsigned char>(ch) < 0x20)
        absl::StrAppendFormat(&out, "\\u%04x", ch);
      else
        out.push_back(ch);
    }
    return out;
  }

  static const char* errno_name(int e) {
    switch (e) {
      case EBUSY:
        return "EBUSY";
      case ENOMEM:
        return "ENOMEM";
      case EFAULT:
        return "EFAULT";
      case ENOENT:
        return "ENOENT";
      case EACCES:
        return "EACCES";
      case EPERM:
        return "EPERM";
      case EINVAL:
        return "EINVAL";
      case ENODEV:
        return "ENODEV";
      case EIO:
        return "EIO";
      default:
        return "other";
    }
  }
};

}  // namespace tierkit
