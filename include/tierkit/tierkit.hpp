// tierkit/tierkit.hpp: the umbrella header. Includes the whole public API:
// topology discovery, tier-bound memory and tiered_allocator, regions and the
// hotness tracker, policies, the rate limiter, backends and the engine.
// See include/tierkit/README.md for the layers and what each header is for.
#pragma once

#include "tierkit/allocator.hpp"
#include "tierkit/backend.hpp"
#include "tierkit/backend/fault_injection.hpp"
#include "tierkit/backend/linux.hpp"
#include "tierkit/backend/simulated.hpp"
#include "tierkit/common.hpp"
#include "tierkit/engine.hpp"
#include "tierkit/hotness.hpp"
#include "tierkit/memory_resource.hpp"
#include "tierkit/policy.hpp"
#include "tierkit/policy/automatic.hpp"
#include "tierkit/policy/kernel_model.hpp"
#include "tierkit/policy/static.hpp"
#include "tierkit/policy/threshold.hpp"
#include "tierkit/rate_limiter.hpp"
#include "tierkit/region.hpp"
#include "tierkit/stats.hpp"
#include "tierkit/topology.hpp"
