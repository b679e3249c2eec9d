# What `cmake --install` puts under its prefix:
#
#   include/mirrormm/...                          the public headers (and the generated version.h)
#   lib/libmirrormm.a                             the library
#   lib/cmake/mirrormm/                           find_package(mirrormm CONFIG): mirrormm::mirrormm
#   lib/pkgconfig/mirrormm.pc                     pkg-config --cflags --libs mirrormm
#   bin/mirrormm                                  the command-line program
#   libexec/mirrormm/mirrormm-host-worker         the process `mirrormm host` runs scripts in
#
# Everything is relocatable: the CMake package and the .pc file find the prefix from their own
# location, and bin/mirrormm finds the worker relative to itself (src/host/controller.cc), so
# `cmake --install BUILD --prefix P` works for any P.
include(CMakePackageConfigHelpers)

set(MIRRORMM_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/mirrormm)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/mirrormm ${PROJECT_BINARY_DIR}/include/mirrormm
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
install(TARGETS mirrormm EXPORT mirrormmTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS mirrormm_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS mirrormm_host_worker RUNTIME DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/mirrormm)

install(EXPORT mirrormmTargets NAMESPACE mirrormm:: DESTINATION ${MIRRORMM_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/mirrormmConfig.cmake.in
  ${PROJECT_BINARY_DIR}/mirrormmConfig.cmake INSTALL_DESTINATION ${MIRRORMM_CMAKE_DIR})
# Before 1.0 a minor version may change the API.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/mirrormmConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/mirrormmConfig.cmake ${PROJECT_BINARY_DIR}/mirrormmConfigVersion.cmake
        DESTINATION ${MIRRORMM_CMAKE_DIR})

# mirrormm.pc: the prefix is found from the file's own directory (${pcfiledir}).
file(RELATIVE_PATH MIRRORMM_PC_PREFIX_FROM_PCFILEDIR /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" MIRRORMM_PC_PREFIX_FROM_PCFILEDIR "${MIRRORMM_PC_PREFIX_FROM_PCFILEDIR}")
set(MIRRORMM_PC_CFLAGS "")
if(MIRRORMM_DEBUG_CHECKS)
  set(MIRRORMM_PC_CFLAGS " -DMIRRORMM_DEBUG_CHECKS=1")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/mirrormm.pc.in ${PROJECT_BINARY_DIR}/mirrormm.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/mirrormm.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
