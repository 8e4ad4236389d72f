// mismatch: C++ findings for the text parser: demangled names with parentheses, templates and
// operator(), a mismatched free (new[] released with delete), a leak through std::vector.
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace cache {
template <typename T> struct Pool {
    std::vector<T *> items;
    T *take(std::size_t n) { T *p = new T[n]; items.push_back(p); return p; }
};
struct Release {
    void operator()(char *p) const { delete p; }   // mismatched: allocated with new[]
};
}

static std::map<std::string, int *> *registry;

int main()
{
    cache::Pool<char> pool;
    char *c = pool.take(24);
    std::strcpy(c, "x");
    cache::Release()(c);
    registry = new std::map<std::string, int *>;
    (*registry)["answer"] = new int(42);
    registry = nullptr;   // the map and its node leak
    return 0;
}
