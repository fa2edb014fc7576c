#ifndef METATRAIN_CPROTOBUFC_SHIM_H
#define METATRAIN_CPROTOBUFC_SHIM_H
#include <protobuf-c/protobuf-c.h>
#endif
