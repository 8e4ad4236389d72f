/* segv: a use after free, then a NULL dereference that kills the process (fatal signal). */
#include <stdlib.h>

int main(void)
{
    char *p = malloc(10);
    free(p);
    p[2] = 1;
    int *q = NULL;
    return *q;
}
