int http_serve(void);
