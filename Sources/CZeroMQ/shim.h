#ifndef METATRAIN_CZEROMQ_SHIM_H
#define METATRAIN_CZEROMQ_SHIM_H
#include <zmq.h>
#endif
