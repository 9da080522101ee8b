/* Pre-emption signals; see signals.h. The flag is the one piece of global
 * mutable state a signal handler needs, so it lives here in runtime/. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "signals.h"

static volatile sig_atomic_t pending;

static void on_signal(int sig)
{
    pending = sig;
}

int dl_signals_install(dl_err_t *err)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART; /* reads and collectives go on; the loop looks at the flag */
    if (sigemptyset(&sa.sa_mask) != 0)
        return DL_ERR(err, DL_ELIB, "sigemptyset failed: %s", strerror(errno));
    const int sigs[] = {SIGTERM, SIGUSR1};
    for (int i = 0; i < 2; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return DL_ERR(err, DL_ELIB, "cannot install the handler of signal %d: %s", sigs[i],
                          strerror(errno));
    return 0;
}

int dl_signal_pending(void)
{
    return pending;
}

const char *dl_signal_name(int sig, char *buf, int size)
{
    if (sig == SIGTERM)
        return "SIGTERM";
    if (sig == SIGUSR1)
        return "SIGUSR1";
    snprintf(buf, (size_t)size, "signal %d", sig);
    return buf;
}
