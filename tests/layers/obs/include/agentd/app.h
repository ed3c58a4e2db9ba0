int app_count(void);
