/*
 * Ends one instantiation of the kernel templates (elementwise_impl.h,
 * panel_kernels_impl.h, panel_reduced_impl.h): undefines every parameter an
 * ISA file may have set for it, so the next instantiation starts clean.
 */
#undef REAL
#undef GRU_NAME
#undef GRU_EXP
#undef GRU_TANH
#undef GRU_FABS
#undef GRU_LOG
#undef GRU_PANEL
#undef GRU_MAX_ROWS
