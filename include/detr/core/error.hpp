#pragma once
// detr::Error: every check a user can trigger (shapes, files, values) throws this, in release
// builds too. The message carries file:line of the check and says what was expected vs found.
#include <sstream>
#include <stdexcept>
#include <string>

namespace detr {

class Error : public std::runtime_error {
 public:
  Error(const char* file, int line, const std::string& what)
      : std::runtime_error(std::string(what) + "  [" + file + ":" + std::to_string(line) + "]") {}
};

}  // namespace detr

// DETR_CHECK(cond, stream-expression): `DETR_CHECK(a == b, "linear: x " << x.shape() << ...)`.
#define DETR_CHECK(cond, msg)                                         \
  do {                                                                \
    if (!(cond)) [[unlikely]] {                                       \
      std::ostringstream detr_check_os_;                              \
      detr_check_os_ << msg;                                          \
      throw ::detr::Error(__FILE__, __LINE__, detr_check_os_.str());  \
    }                                                                 \
  } while (0)

#define DETR_FAIL(msg) DETR_CHECK(false, msg)
