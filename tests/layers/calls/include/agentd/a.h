int a_value(void);
extern int a_count;
