int t_call(void);
