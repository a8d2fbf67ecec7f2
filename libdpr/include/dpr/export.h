/*
 * export.h - DPR_EXPORT marks the functions of libdpr's public API.
 *
 * libdpr is compiled with -fvisibility=hidden: only declarations marked
 * DPR_EXPORT in the headers of libdpr/include/dpr/ leave libdpr.so, so
 * `nm -D libdpr.so` lists exactly the public API (tests/libdpr checks it).
 */
#ifndef DPR_EXPORT_H
#define DPR_EXPORT_H

#define DPR_EXPORT __attribute__((visibility("default")))

#endif
