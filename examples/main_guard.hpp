#pragma once
// What every example's main() ends in: any error a user can cause (bad input, an unwritable
// --out, memory) becomes one line on stderr and exit status 1, never an abort.
#include <filesystem>
#include <iostream>
#include <new>

#include "detr/core/error.hpp"

namespace examples {

template <class F>
int guarded_main(F&& body) {
  try {
    return body();
  } catch (const detr::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
  } catch (const std::filesystem::filesystem_error& e) {  // names the path and the OS's reason
    std::cerr << "error: " << e.what() << "\n";
  } catch (const std::bad_alloc&) {
    std::cerr << "error: out of memory (an input, image or model larger than this machine can hold)\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
  }
  return 1;
}

}  // namespace examples
