# stb (Debian's libstb: headers under include/stb plus the compiled library) as the target
# detr_stb: through pkg-config where it knows stb, else by finding the header and the library
# directly (machines without pkg-config, or a packed copy of the dependencies: scripts/gpu_pack.sh).
if(NOT TARGET detr_stb)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(STB QUIET IMPORTED_TARGET GLOBAL stb)
  endif()
  add_library(detr_stb INTERFACE IMPORTED GLOBAL)
  if(TARGET PkgConfig::STB)
    set_target_properties(detr_stb PROPERTIES INTERFACE_LINK_LIBRARIES PkgConfig::STB)
  else()
    find_path(DETR_STB_INCLUDE_DIR stb_image.h PATH_SUFFIXES stb)
    find_library(DETR_STB_LIBRARY stb)
    if(NOT DETR_STB_INCLUDE_DIR OR NOT DETR_STB_LIBRARY)
      message(FATAL_ERROR "stb not found: install libstb-dev (or set DETR_STB_INCLUDE_DIR to the folder of "
                          "stb_image.h and DETR_STB_LIBRARY to libstb)")
    endif()
    set_target_properties(detr_stb PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${DETR_STB_INCLUDE_DIR}"
                                              INTERFACE_LINK_LIBRARIES "${DETR_STB_LIBRARY}")
  endif()
endif()
