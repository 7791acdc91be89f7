// tierkit/detail/mutex.hpp: the lock tierkit uses everywhere. A
// std::shared_mutex with Abseil's thread-safety annotations, spelled like
// absl::Mutex. Why not absl::Mutex itself: Debian's Abseil is a prebuilt
// shared library without ThreadSanitizer instrumentation, so TSan cannot see
// its lock edges and reports false races; pthread locks it intercepts.
// Layer 0.
#pragma once

#include <shared_mutex>

#include "absl/base/thread_annotations.h"

namespace tierkit::detail {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  // Exclusive lock; about 20 ns uncontended.
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { m_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { m_.unlock(); }
  // Shared lock, for readers that may run together.
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { m_.lock_shared(); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { m_.unlock_shared(); }

 private:
  std::shared_mutex m_;
};

// Scoped exclusive lock.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }

 private:
  Mutex* mu_;
};
using WriterMutexLock = MutexLock;

// Scoped shared lock.
class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) { mu_->ReaderLock(); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }

 private:
  Mutex* mu_;
};

}  // namespace tierkit::detail
