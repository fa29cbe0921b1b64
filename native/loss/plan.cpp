#include <algorithm>
#include <string>

#include "loss.h"

namespace amr {
namespace loss {

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
}  // namespace

void make_plan(Plan& plan) {
  const std::string why = unsupported_terms(plan.terms);
  if (!why.empty()) throw Error("multiTeacherLoss: " + why);
  const bool mse = plan.mode == Mode::Mse;
  int64_t items = 0;
  int capacity = 0;
  for (int k = 0; k < plan.terms; ++k) {
    Term& t = plan.term[k];
    const std::string who = "multiTeacherLoss: teacher " + std::to_string(k) + ": ";
    if (t.batch < 1) throw Error(who + "batch is empty");
    if (t.cs < 0 || t.cf < 0) throw Error(who + "negative channel count");
    if (t.cs == 0 && t.cf == 0) throw Error(who + "neither a summary nor a feature term");
    t.w_summary = t.lambda / static_cast<float>(t.batch);
    t.summary_items = t.cs > 0 ? ceil_div(t.batch, kSummaryRows) : 0;
    t.feature_items = 0;
    t.rows_per_item = 0;
    if (t.cf > 0) {
      if (t.hs < 1 || t.ws < 1 || t.ht < 1 || t.wt < 1) throw Error(who + "feature grids must be non-empty");
      t.gh = std::max(t.hs, t.ht);
      t.gw = std::max(t.ws, t.wt);
      if (int64_t(t.gh) * t.gw > (int64_t(1) << 30)) throw Error(who + "feature grid too large");
      const double tokens = double(t.batch) * t.gh * t.gw;
      const double elements = tokens * t.cf;
      t.w_cos = mse ? 0.f : static_cast<float>(t.gamma * plan.alpha / tokens);
      t.w_elem = static_cast<float>((mse ? t.gamma : t.gamma * plan.beta) / elements);
      if (t.hs == t.gh && t.ws == t.gw) {
        t.feature_items = ceil_div(int64_t(t.batch) * t.gh * t.gw, kTokensPerItem);
      } else {
        // Bands of student rows sized so the target rows they read hold about kGatherTokens tokens.
        const int per_row = static_cast<int>(ceil_div(t.gh, t.hs)) * t.gw;
        t.rows_per_item = std::min(t.hs, std::max(1, kGatherTokens / per_row));
        const int bands = static_cast<int>(ceil_div(t.hs, t.rows_per_item));
        t.feature_items = int64_t(t.batch) * bands;
        for (int band = 0; band < bands; ++band) {
          int lo, hi;
          band_rows(t, band * t.rows_per_item, std::min(t.hs, (band + 1) * t.rows_per_item), &lo, &hi);
          capacity = std::max(capacity, (hi - lo) * t.gw);
        }
      }
    }
    t.first_item = items;
    items += t.summary_items + t.feature_items;
  }
  plan.items = items;
  plan.stats_capacity = capacity;
}

int64_t scratch_bytes(const Plan& plan) { return std::max<int64_t>(1, plan.items) * 2 * int64_t(sizeof(float)); }

}  // namespace loss
}  // namespace amr
