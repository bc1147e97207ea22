/* The names of the drop reasons: the `reason` label in metrics, the
 * `pushbridge-reason` header on dead letters, the word in the log. */
#include "pushbridge/core/drop.h"

static const char *const reason_names[PB_DROP__COUNT] = {
    "none",      "not_json",     "not_object", "no_target",
    "oversized", "key_mismatch", "bad_field",  "stale",
    "outdated",  "broadcast_not_allowed", "unsupported_encoding", "no_source",
};

const char *pb_drop_reason_name(int reason)
{
    if (reason < 0 || reason >= PB_DROP__COUNT)
        return "unknown";
    return reason_names[reason];
}
