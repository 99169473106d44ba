/* Wall time for profiles and progress reports (never for results). */
#ifndef CNV_CLOCK_H
#define CNV_CLOCK_H

/* Seconds on the monotonic clock, from an arbitrary origin. */
double cnv_now(void);

#endif
