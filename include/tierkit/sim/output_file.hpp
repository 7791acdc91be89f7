// tierkit/sim/output_file.hpp: writes an output file all or nothing. The data
// goes to a temporary file beside it, renamed over it only once complete, so
// a refused or failed run leaves an existing file as it was. Layer 0 of the
// simulator: POSIX and Abseil only.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tierkit::sim {

namespace detail {

inline absl::Status cannot_write(const std::string& path, int err) {
  return absl::ErrnoToStatus(err, absl::StrCat("cannot write '", path, "'"));
}

// "dir/" of "dir/name", "" for a bare name.
inline std::string dir_prefix(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

}  // namespace detail

// Whether `path` could be written: not a directory, writable if it exists,
// and a new or regular file in a writable directory. Creates nothing, so a
// caller can check before a long run and still refuse it later without
// leaving a file behind.
inline absl::Status check_writable(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return detail::cannot_write(path, EISDIR);
    // A read-only file stays protected, as it was when we opened it in place.
    if (::access(path.c_str(), W_OK) != 0) return detail::cannot_write(path, errno);
    if (!S_ISREG(st.st_mode)) return absl::OkStatus();  // /dev/stdout, a FIFO: written directly
  } else if (errno != ENOENT) {
    return detail::cannot_write(path, errno);
  }
  const std::string dir = detail::dir_prefix(path);
  if (::access(dir.empty() ? "." : dir.c_str(), W_OK | X_OK) != 0)
    return detail::cannot_write(path, errno);
  return absl::OkStatus();
}

// A file written through a temporary beside it: commit() renames it into
// place; destroyed uncommitted, the temporary is removed and `path` untouched.
// A device or FIFO (/dev/stdout) cannot be replaced: it is written directly.
class OutputFile {
 public:
  static absl::StatusOr<OutputFile> create(const std::string& path) {
    if (absl::Status s = check_writable(path); !s.ok()) return s;
    OutputFile f(path);
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      f.fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (f.fd_ < 0) return detail::cannot_write(path, errno);
      return f;
    }
    const std::string base = path.substr(detail::dir_prefix(path).size());
    for (int n = 0; f.fd_ < 0 && n < 100; ++n) {
      f.temp_ = absl::StrCat(detail::dir_prefix(path), ".", base, ".tmp-", ::getpid(), "-", n);
      f.fd_ = ::open(f.temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
      if (f.fd_ < 0 && errno != EEXIST) return detail::cannot_write(path, errno);
    }
    if (f.fd_ < 0) return detail::cannot_write(path, EEXIST);
    if (::stat(path.c_str(), &st) == 0)  // a replaced file keeps its permissions
      (void)::fchmod(f.fd_, st.st_mode & 07777);
    return f;
  }
  OutputFile(OutputFile&& o) noexcept
      : path_(std::move(o.path_)), temp_(std::move(o.temp_)), fd_(std::exchange(o.fd_, -1)) {
    o.temp_.clear();
  }
  OutputFile& operator=(OutputFile&&) = delete;
  ~OutputFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!temp_.empty()) ::unlink(temp_.c_str());
  }

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  // Where to write by name: the temporary, or `path` when written directly.
  const std::string& temp_path() const { return temp_.empty() ? path_ : temp_; }

  absl::Status write(absl::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return detail::cannot_write(path_, n < 0 ? errno : EIO);
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return absl::OkStatus();
  }

  // Flushes the temporary to disk (so a crash leaves the old file or the new
  // one, never an empty one) and renames it over `path`.
  absl::Status commit() {
    if (temp_.empty()) {  // written directly
      if (::close(std::exchange(fd_, -1)) != 0) return detail::cannot_write(path_, errno);
      return absl::OkStatus();
    }
    if (::fsync(fd_) != 0 || ::close(std::exchange(fd_, -1)) != 0)
      return detail::cannot_write(path_, errno);
    if (::rename(temp_.c_str(), path_.c_str()) != 0) return detail::cannot_write(path_, errno);
    temp_.clear();
    return absl::OkStatus();
  }

 private:
  explicit OutputFile(std::string path) : path_(std::move(path)) {}

  std::string path_, temp_;
  int fd_ = -1;
};

}  // namespace tierkit::sim
