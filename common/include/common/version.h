/* version.h - the version programs print for --version.
 *
 * DPR_VERSION comes from the Makefile (VERSION: the first line of
 * debian/changelog, docs/packaging.md) for the objects it lists in
 * VALUE_OBJS; elsewhere (fuzz targets) it is "unknown". Print it as
 * dpr_print_version() does: "<program> <version>". */
#ifndef DPR_COMMON_VERSION_H
#define DPR_COMMON_VERSION_H

#ifndef DPR_VERSION
#define DPR_VERSION "unknown"
#endif

#endif
